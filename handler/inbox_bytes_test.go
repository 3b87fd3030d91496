package handler_test

import (
	"bytes"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// With a store, a peer's unhandled messages are bounded in bytes, not only
// in number: past MaxInboxBytesPerPeer a new one is answered busy, after a
// restart too (the pending records are counted as they are loaded), until
// the application handles one.
func TestInboxBytesBoundedPerPeer(t *testing.T) {
	ib, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	const size = 16 << 10
	b := newNode(t, ib, tu.Allowlist(t, ib, ir), func(c *handler.Config) { c.MaxInboxBytesPerPeer = 4 * size })
	raw := newRawPeer(t, ir, "127.0.0.1")
	payload := bytes.Repeat([]byte("x"), size)
	for id := range handler.ExchangeID(4) {
		if r := raw.send(b.h, envelope(hpb.Kind_KIND_MESSAGE, id+1, payload)); r != pb.Reason_OK {
			t.Fatalf("message %d: %v", id+1, r)
		}
	}
	if r := raw.send(b.h, envelope(hpb.Kind_KIND_MESSAGE, 5, payload)); r != pb.Reason_BUSY {
		t.Fatalf("message past the byte bound: %v, want busy", r)
	}
	// A small one passes neither bound by count, and still the bytes.
	if r := raw.send(b.h, envelope(hpb.Kind_KIND_MESSAGE, 6, []byte("y"))); r != pb.Reason_BUSY {
		t.Fatalf("small message past the byte bound: %v, want busy", r)
	}

	b.restart(false)
	if r := raw.send(b.h, envelope(hpb.Kind_KIND_MESSAGE, 5, payload)); r != pb.Reason_BUSY {
		t.Fatalf("after a restart: %v, want busy", r)
	}
	m := tu.Next[*handler.Message](t, b.h.Events())
	if !m.Redelivered {
		t.Fatalf("message %+v", m)
	}
	if err := b.h.Ack(m.From, m.Exchange); err != nil {
		t.Fatal(err)
	}
	if r := raw.send(b.h, envelope(hpb.Kind_KIND_MESSAGE, 5, payload)); r != pb.Reason_OK {
		t.Fatalf("after an Ack: %v, want ok", r)
	}
	if r := raw.send(b.h, envelope(hpb.Kind_KIND_MESSAGE, 7, payload)); r != pb.Reason_BUSY {
		t.Fatalf("full again: %v, want busy", r)
	}
}
