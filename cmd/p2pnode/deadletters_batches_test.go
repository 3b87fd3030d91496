package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/store"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// A retry of many dead letters on a stopped store commits in batches
// bounded by their payloads; a batch that fails leaves itself and the
// rest unchanged, and the command learns which were changed before it.
func TestChangeStoredInBatches(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const n, size = 7, 1000
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	to, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	var ids []handler.ExchangeID
	var b store.Batch
	for i := range n {
		id := uint64(i + 1)
		ids = append(ids, handler.ExchangeID(id))
		o := store.Outgoing{ID: id, Peer: string(to), Kind: store.KindRequest, Payload: bytes.Repeat([]byte{byte(i)}, size), Created: time.Now()}
		b.PutDeadLetter(store.DeadLetter{Outgoing: o, Reason: "reply_timeout", Failed: time.Now()})
	}
	if err := st.Commit(&b); err != nil {
		t.Fatal(err)
	}
	retry := func(b *store.Batch, d store.DeadLetter) {
		o := d.Outgoing
		o.Attempts = 0
		if o.ID == 6 {
			o.Peer = "" // refused at commit: the batch that holds it fails
		}
		b.PutOutgoing(o)
		b.DeleteDeadLetter(d.ID)
	}
	// Two dead letters a batch: 1-2, 3-4, then 5-6 fails.
	done, err := changeStored(st, ids, retry, 2*size)
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("err %v, want the third batch refused", err)
	}
	if len(done) != 4 || done[3] != 4 {
		t.Fatalf("done %v, want the first four", done)
	}
	for _, id := range ids {
		_, dead, err := st.DeadLetter(uint64(id))
		if err != nil {
			t.Fatal(err)
		}
		_, out, err := st.Outgoing(uint64(id))
		if err != nil {
			t.Fatal(err)
		}
		if moved := id <= 4; dead == moved || out != moved {
			t.Errorf("exchange %d: dead letter %v, in the outbox %v", id, dead, out)
		}
	}
}
