package handler_test

import (
	"bytes"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// noAckReplies is a raw peer's policy that takes the handler's requests and
// messages and never acks its replies: each stays in the handler's memory,
// with its request, until the peer acks it or its sends run out.
func noAckReplies(env *hpb.Envelope, _ int) pb.Reason {
	if env.Kind == hpb.Kind_KIND_REPLY {
		return noAck
	}
	return pb.Reason_OK
}

// sendHeld sends request id with payload from raw to h, whose application
// answers at once, and waits for the reply the raw peer does not ack.
func sendHeld(t *testing.T, raw *rawPeer, h *handler.Handler, id handler.ExchangeID, payload []byte) {
	t.Helper()
	if r := raw.send(h, envelope(hpb.Kind_KIND_REQUEST, id, payload)); r != pb.Reason_OK {
		t.Fatalf("request %d: %v", id, r)
	}
	for {
		// Skipping the replies sent again to those held before.
		env := raw.next()
		if env.Kind == hpb.Kind_KIND_REPLY && handler.ExchangeID(env.Exchange) == id {
			return
		}
		if env.Kind != hpb.Kind_KIND_REPLY || env.Exchange >= uint64(id) {
			t.Fatalf("got %v %d, want the reply to %d", env.Kind, env.Exchange, id)
		}
	}
}

// checkHeld checks what peer p holds against h's inbox bounds.
func checkHeld(t *testing.T, h *handler.Handler, p *rawPeer, n, minBytes, maxBytes int) {
	t.Helper()
	if gotN, gotBytes := h.InboxUse(p.id.ID); gotN != n || gotBytes < minBytes || gotBytes > maxBytes {
		t.Fatalf("peer holds %d exchanges, %d bytes; want %d, %d to %d bytes", gotN, gotBytes, n, minBytes, maxBytes)
	}
}

// TestEphemeralRepliesAwaitingAckBounded: without a store, the requests a
// peer has answered and whose replies it does not ack count against its
// inbox bounds, in bytes too. Each keeps its request and its reply in
// memory until the peer acks it or its sends run out; unbounded, a listed
// peer sending fresh requests as fast as they are acked to an application
// that answers at once, and never reading the replies, grew the victim by
// two payloads a request (2 GB in 20 s of 1 MiB requests). Past
// MaxInboxBytesPerPeer it hears busy, whatever the size of the next one,
// while a resend of one held passes; another peer is still served; and
// once its replies are acked the peer has room again.
func TestEphemeralRepliesAwaitingAckBounded(t *testing.T) {
	ib, ir, ic := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ib, ir, ic)
	const size = 16 << 10
	b := newHandler(t, ib, list, func(c *handler.Config) { c.MaxInboxBytesPerPeer = 4 * size })
	echo(t, b)
	c := newHandler(t, ic, list)
	raw := newRawPeer(t, ir, "127.0.0.1")
	raw.setPolicy(noAckReplies)
	payload := bytes.Repeat([]byte("x"), size)

	// Each answered request holds its payload and its reply's: two fit
	// into 4*size, and a third would pass it.
	sendHeld(t, raw, b, 1, payload)
	sendHeld(t, raw, b, 2, payload)
	checkHeld(t, b, raw, 2, 4*size, 4*size+64)
	if r := raw.send(b, envelope(hpb.Kind_KIND_REQUEST, 3, payload)); r != pb.Reason_BUSY {
		t.Fatalf("request past the byte bound: %v, want busy", r)
	}
	if r := raw.send(b, envelope(hpb.Kind_KIND_REQUEST, 4, []byte("y"))); r != pb.Reason_BUSY {
		t.Fatalf("small request past the byte bound: %v, want busy", r)
	}
	// A resend of one held is no new request.
	if r := raw.send(b, envelope(hpb.Kind_KIND_REQUEST, 1, payload)); r != pb.Reason_OK {
		t.Fatalf("resend of a held request: %v, want ok", r)
	}
	checkHeld(t, b, raw, 2, 4*size, 4*size+64)
	if held := b.HeldBytes(); held > 4*size+64 {
		t.Fatalf("the handler holds %d bytes, want at most %d", held, 4*size+64)
	}

	// Another peer is served meanwhile.
	id, err := c.Request(ib.ID, addr(b), payload)
	if err != nil {
		t.Fatal(err)
	}
	if r := tu.NextMatch(t, c.Events(), func(r *handler.Reply) bool { return r.Exchange == id }); !bytes.Equal(r.Data, payload) {
		t.Fatalf("reply of %d bytes, want the echo", len(r.Data))
	}
	expect(t, outcome(t, c, id), true, handler.ReasonOK)

	// The raw peer drops its stream and acks what comes next: the replies
	// go again, are acked, and their exchanges end, which frees the room.
	raw.setPolicy(nil)
	raw.sendMu.Lock()
	raw.out.s.Reset()
	raw.sendMu.Unlock()
	for range 2 {
		o := tu.NextMatch(t, b.Outcomes(), func(o *handler.Outcome) bool { return o.Peer == ir.ID })
		expect(t, o, true, handler.ReasonOK)
	}
	checkHeld(t, b, raw, 0, 0, 0)
	sendHeld(t, raw, b, 3, payload)
}

// TestInboxCountsRepliesAwaitingAck: with a store, a request leaves its
// peer's inbox once answered, but its reply stays in memory until the peer
// acks it: it counts against MaxInboxBytesPerPeer until then, so that a
// peer that does not read our replies cannot make the node hold more of
// them than the bound, as it could before, with an inbox always empty.
func TestInboxCountsRepliesAwaitingAck(t *testing.T) {
	ib, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	const size = 16 << 10
	b := newNode(t, ib, tu.Allowlist(t, ib, ir), func(c *handler.Config) { c.MaxInboxBytesPerPeer = 4 * size })
	echo(t, b.h)
	raw := newRawPeer(t, ir, "127.0.0.1")
	raw.setPolicy(noAckReplies)
	payload := bytes.Repeat([]byte("x"), size)
	sendHeld(t, raw, b.h, 1, payload)
	sendHeld(t, raw, b.h, 2, payload)
	checkHeld(t, b.h, raw, 2, 4*size, 4*size+64)
	if r := raw.send(b.h, envelope(hpb.Kind_KIND_REQUEST, 3, payload)); r != pb.Reason_BUSY {
		t.Fatalf("request past the byte bound: %v, want busy", r)
	}
	if r := raw.send(b.h, envelope(hpb.Kind_KIND_MESSAGE, 4, []byte("y"))); r != pb.Reason_BUSY {
		t.Fatalf("message past the byte bound: %v, want busy", r)
	}
	checkHeld(t, b.h, raw, 2, 4*size, 4*size+64)

	raw.setPolicy(nil)
	raw.sendMu.Lock()
	raw.out.s.Reset()
	raw.sendMu.Unlock()
	for range 2 {
		o := tu.NextMatch(t, b.h.Outcomes(), func(o *handler.Outcome) bool { return o.Peer == ir.ID })
		expect(t, o, true, handler.ReasonOK)
	}
	checkHeld(t, b.h, raw, 0, 0, 0)
	sendHeld(t, raw, b.h, 3, payload)
}
