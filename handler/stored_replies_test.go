package handler_test

import (
	"bytes"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	pb "github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// TestStoredRepliesBoundedPerPeer: the replies a store keeps for resends of
// a peer's answered requests are bounded by MaxInboxBytesPerPeer, oldest
// dropped first. (They were bounded only by DedupePerPeer replies of up to
// MaxMessageSize, 4 GiB a peer: one peer sending fresh requests filled the
// store, and every peer's exchanges failed with it.) A resend of an
// exchange whose reply was dropped is neither delivered nor answered, in
// this life and the next.
func TestStoredRepliesBoundedPerPeer(t *testing.T) {
	ib, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	const size = 1000
	b := newNode(t, ib, tu.Allowlist(t, ib, ir), handler.WithKeepConnection(true),
		func(c *handler.Config) { c.MaxInboxBytesPerPeer = 3 * size }) // two replies and their envelopes
	raw := newRawPeer(t, ir, "127.0.0.1")
	reply := func(id handler.ExchangeID) []byte { return bytes.Repeat([]byte{byte(id)}, size) }
	request := func(id handler.ExchangeID) {
		t.Helper()
		if r := raw.send(b.h, envelope(hpb.Kind_KIND_REQUEST, id, []byte("q"))); r != pb.Reason_OK {
			t.Fatalf("request %s: %v", id, r)
		}
	}
	replied := func(id handler.ExchangeID) {
		t.Helper()
		env := raw.next()
		if env.Kind != hpb.Kind_KIND_REPLY || handler.ExchangeID(env.Exchange) != id || !bytes.Equal(env.Payload, reply(id)) {
			t.Fatalf("want the reply to %s, got %v %x (%d bytes)", id, env.Kind, env.Exchange, len(env.Payload))
		}
	}
	answered := func(id handler.ExchangeID) {
		t.Helper()
		replied(id)
		expect(t, outcome(t, b.h, id), true, handler.ReasonOK)
	}
	// A stored reply sent again ends with no Outcome (the request's
	// exchange had its own): wait for the exchange sending it to end.
	replayed := func(id handler.ExchangeID) {
		t.Helper()
		replied(id)
		if !b.h.WaitGone(id, tu.Timeout) {
			t.Fatalf("the replay of %s did not end", id)
		}
	}
	for id := handler.ExchangeID(1); id <= 5; id++ {
		request(id)
		if r := nextRequest(t, b.h); r.Exchange != id {
			t.Fatalf("request %+v", r)
		}
		if err := b.h.Response(ir.ID, id, reply(id)); err != nil {
			t.Fatal(err)
		}
		answered(id)
	}
	// The store keeps the two newest replies; the others are dedupe
	// records marked answered, without their reply.
	check := func() {
		t.Helper()
		st, err := b.st.Load()
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range st.Incoming {
			kept := in.ID >= 4
			if kept && (in.State != store.InAnswered || len(in.Reply) != size) ||
				!kept && (in.State != store.InHandled || !in.Answered || len(in.Reply) != 0) {
				t.Errorf("exchange %d: %s, answered %v, reply of %d bytes", in.ID, in.State, in.Answered, len(in.Reply))
			}
		}
		if len(st.Incoming) != 5 {
			t.Errorf("%d incoming records, want 5", len(st.Incoming))
		}
	}
	// A resend of a dropped one gets no reply (the next envelope is the
	// kept one's, resent after it on the same stream) and is not
	// delivered.
	resends := func() {
		t.Helper()
		request(2)
		request(5)
		replayed(5)
		if ev, ok := b.h.CheckReceive(); ok {
			t.Fatalf("after the resends: %T %+v", ev, ev)
		}
	}
	// The drops are written without waiting; an empty commit returns once
	// every earlier one is through.
	if err := b.st.Commit(&store.Batch{}); err != nil {
		t.Fatal(err)
	}
	check()
	resends()
	b.restart(false)
	check()
	resends()
}

// TestStoredReplyKeptWhileOnItsWay: the bound drops the oldest replies whose
// exchanges have ended, not one still on its way to the peer (awaiting its
// ack): a dialer that restarts and resends gets that one.
func TestStoredReplyKeptWhileOnItsWay(t *testing.T) {
	ib, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	const size = 1000
	b := newNode(t, ib, tu.Allowlist(t, ib, ir), handler.WithKeepConnection(true),
		func(c *handler.Config) { c.MaxInboxBytesPerPeer = 3 * size })
	raw := newRawPeer(t, ir, "127.0.0.1")
	raw.setPolicy(noAckReplies)
	for id := handler.ExchangeID(1); id <= 3; id++ {
		raw.send(b.h, envelope(hpb.Kind_KIND_REQUEST, id, []byte("q")))
		r := nextRequest(t, b.h)
		if err := b.h.Response(ir.ID, r.Exchange, bytes.Repeat([]byte{1}, size)); err != nil {
			t.Fatal(err)
		}
		for {
			env := raw.next()
			if env.Kind == hpb.Kind_KIND_REPLY && handler.ExchangeID(env.Exchange) == id {
				break
			}
		}
	}
	if err := b.st.Commit(&store.Batch{}); err != nil {
		t.Fatal(err)
	}
	st, err := b.st.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range st.Incoming {
		if in.State != store.InAnswered {
			t.Errorf("reply %d dropped from the store (%s, answered %v) while its exchange awaits the ack", in.ID, in.State, in.Answered)
		}
	}
}
