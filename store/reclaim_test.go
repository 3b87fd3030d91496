package store

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// A store that fills with records since overwritten (received messages,
// each marked handled once the application had it) reclaims their room
// itself when it refuses a batch: it takes new records again, without a
// restart. (It reclaimed only after deletes, and stayed full, refusing
// everything, with nothing pending.) Pebble's own compactions, which would
// drop the old versions sooner or later, are off, as they are in effect
// when nothing is written.
func TestFullStoreReclaimsOverwrites(t *testing.T) {
	const limit = 4 << 20
	reclaims := make(chan error, 16)
	deleted := make(chan struct{}, 1) // a table file deleted (pebble's TableDeleted)
	s := openT(t, t.TempDir(), Options{MaxBytes: limit, reclaimed: func(err error) { reclaims <- err },
		tune: func(o *pebble.Options) {
			o.DisableAutomaticCompactions = true
			o.EventListener.TableDeleted = func(pebble.TableDeleteInfo) {
				select {
				case deleted <- struct{}{}:
				default:
				}
			}
		}})
	closeT(t, s)
	rnd := rand.NewChaCha8([32]byte{3})
	// Each message is marked handled once lag more have come: by then its
	// record is in an sstable, which keeps the overwritten version.
	const lag = 40 // 800 kB pending
	var err error
	var id uint64
	for id = 1; id < 2000 && err == nil; id++ {
		in := incoming("peer", id)
		in.Payload = make([]byte, 20_000) // random: compression cannot shrink it
		_, _ = rnd.Read(in.Payload)
		var b Batch
		b.AddIncoming(in)
		if id > lag {
			old := incoming("peer", id-lag)
			old.State, old.Payload = InHandled, nil
			b.PutIncoming(old)
		}
		err = s.Commit(&b)
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("after %d received messages: %v, want ErrFull", id, err)
	}
	// The refusal started a reclaim (none ran before: nothing was full).
	if err := recv(t, reclaims, "a reclaim"); err != nil {
		t.Fatal(err)
	}
	// Pebble deletes the files the reclaim left obsolete in the
	// background, soon after: the commit is tried again as each goes,
	// until it goes through.
	for {
		var b Batch
		b.AddIncoming(incoming("peer", id))
		err := s.Commit(&b)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrFull) {
			t.Fatalf("after the reclaim: %v (the store holds %d pending records and %d handled)", err, lag, id-lag)
		}
		recv(t, deleted, "an obsolete table deleted, the store still full")
	}
}
