package store

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// A store that fills with records since overwritten (received messages,
// each marked handled once the application had it) reclaims their room
// itself when it refuses a batch: it takes new records again, without a
// restart. (It reclaimed only after deletes, and stayed full, refusing
// everything, with nothing pending.)
func TestFullStoreReclaimsOverwrites(t *testing.T) {
	const limit = 1 << 20
	reclaims := make(chan error, 16)
	s := openT(t, t.TempDir(), Options{MaxBytes: limit, reclaimed: func(err error) { reclaims <- err }})
	closeT(t, s)
	rnd := rand.NewChaCha8([32]byte{3})
	var err error
	var id uint64
	var unhandled *Incoming // stored, and its handled mark refused
	for id = 1; id < 1000; id++ {
		in := incoming("peer", id)
		in.Payload = make([]byte, 20_000) // random: compression cannot shrink it
		_, _ = rnd.Read(in.Payload)
		var b Batch
		b.AddIncoming(in)
		if err = s.Commit(&b); err != nil {
			break
		}
		in.State, in.Payload = InHandled, nil
		var h Batch
		h.PutIncoming(in)
		if err = s.Commit(&h); err != nil {
			unhandled = &in
			break
		}
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("after %d received messages, handled: %v, want ErrFull", id, err)
	}
	// The refusal started a reclaim (none ran before: nothing was full).
	if err := recv(t, reclaims, "a reclaim"); err != nil {
		t.Fatal(err)
	}
	if unhandled != nil {
		commitT(t, s, func(b *Batch) { b.PutIncoming(*unhandled) })
		id++
	}
	var b Batch
	b.AddIncoming(incoming("peer", id))
	if err := s.Commit(&b); err != nil {
		t.Fatalf("after the reclaim: %v (the store holds %d handled records, nothing else)", err, id-1)
	}
}
