package store

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// A store that fills with records since overwritten (received messages,
// each marked handled once the application had it) reclaims their room
// itself when it would refuse a batch, and takes the batch once it has:
// no message is refused, though the store fills over and over. (It
// reclaimed only after deletes, and stayed full, refusing everything,
// with nothing pending; then it refused the batch that found it full,
// and reclaimed after.) Pebble's own compactions, which would drop the
// old versions sooner or later, are off, as they are in effect when
// nothing is written.
func TestFullStoreReclaimsOverwrites(t *testing.T) {
	const limit = 4 << 20
	var reclaims atomic.Int32
	s := openT(t, t.TempDir(), Options{MaxBytes: limit, reclaimWait: time.Minute,
		reclaimed: func(err error) {
			// Close cancels a reclaim still running: not a failure.
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("reclaim: %v", err)
			}
			reclaims.Add(1)
		},
		tune: func(o *pebble.Options) { o.DisableAutomaticCompactions = true }})
	closeT(t, s)
	rnd := rand.NewChaCha8([32]byte{3})
	// Each message is marked handled once lag more have come: by then its
	// record is in an sstable, which keeps the overwritten version.
	const lag = 40 // 800 kB pending
	payload := make([]byte, 20_000)
	for id := uint64(1); id <= 1000; id++ {
		in := incoming("peer", id)
		_, _ = rnd.Read(payload) // random: compression cannot shrink it
		in.Payload = payload
		var b Batch
		b.AddIncoming(in)
		if id > lag {
			old := incoming("peer", id-lag)
			old.State, old.Payload = InHandled, nil
			b.PutIncoming(old)
		}
		if err := s.Commit(&b); err != nil {
			t.Fatalf("received message %d: %v (the store holds %d pending records and %d handled)", id, err, lag, id-lag)
		}
	}
	// 20 MB went through a store capped at 4 MiB.
	if reclaims.Load() == 0 {
		t.Error("no reclaim ran")
	}
}

// A store takes a record that fits once the records deleted before it are
// reclaimed: in a sequence of records of a sixteenth of the cap, each
// deleted three puts later, no put is refused. (Deleted records counted
// until a compaction dropped them: at the node's least cap, 16 MiB, with
// 1 MiB records, a sixth to four fifths of the puts were refused, the
// more the faster they came; here, with pebble's own compactions off, so
// that the count does not depend on when they run, nearly all.)
func TestDeletedRecordsDoNotFillTheStore(t *testing.T) {
	const limit = 4 << 20
	// The committer waits for a reclaim as long as it takes: how long
	// that is depends on the machine's load, not on the store.
	s := openT(t, t.TempDir(), Options{MaxBytes: limit, reclaimWait: time.Minute,
		tune: func(o *pebble.Options) { o.DisableAutomaticCompactions = true }})
	closeT(t, s)
	// Random, which compression cannot shrink; the same for each record,
	// which, that far apart, compression does not see.
	payload := make([]byte, limit/16)
	_, _ = rand.NewChaCha8([32]byte{9}).Read(payload)
	refused := 0
	const lag = 3 // records live at once
	const puts = 120
	for id := uint64(1); id <= puts; id++ {
		o := outgoing(id)
		o.Payload = payload
		var b Batch
		b.PutOutgoing(o)
		err := s.Commit(&b)
		if errors.Is(err, ErrFull) {
			refused++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if id > lag {
			commitT(t, s, func(b *Batch) { b.DeleteOutgoing(id - lag) })
		}
	}
	if refused > 0 {
		t.Errorf("%d of %d puts refused, with at most %d bytes live", refused, puts, lag*len(payload))
	}
}
