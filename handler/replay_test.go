package handler_test

import (
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// With a store, a request answered before gets its stored reply again when
// resent: up to MaxAttempts times for free (an honest dialer that lost the
// reply each time), each one after that for a token. A peer that acks the
// reply and asks again and again is cut off instead of costing a store read
// and a whole reply per round trip forever.
func TestReplayedReplyCharged(t *testing.T) {
	ib, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	const attempts, burst = 2, 2
	b := newNode(t, ib, tu.Allowlist(t, ib, ir),
		handler.WithRetry(attempts, 10*time.Millisecond, 50*time.Millisecond),
		// The raw peer's stream stays up for the last resend, whose ack
		// the cut-off may lose.
		handler.WithKeepConnection(true),
		handler.WithNode(func(c *p2p.Config) {
			c.RateLimit = ratelimit.Config{Burst: burst, BanDuration: time.Minute}
		}))
	raw := newRawPeer(t, ir, "127.0.0.1")
	const id = handler.ExchangeID(9)
	req := envelope(hpb.Kind_KIND_REQUEST, id, []byte("q"))
	if r := raw.send(b.h, req); r != pb.Reason_OK {
		t.Fatalf("request: %v", r)
	}
	nextRequest(t, b.h)
	if err := b.h.Response(ir.ID, id, []byte("answer")); err != nil {
		t.Fatal(err)
	}
	// replay waits for a reply envelope, which the raw peer acks OK, and
	// for the exchange that sent it to end, so that the next resend reads
	// the stored reply again. The request's exchange ends with its
	// Outcome; a replay of its reply ends with none.
	replay := func(what string) {
		t.Helper()
		env := raw.next()
		if env.Kind != hpb.Kind_KIND_REPLY || handler.ExchangeID(env.Exchange) != id || string(env.Payload) != "answer" {
			t.Fatalf("%s: envelope %v", what, env)
		}
		if !b.h.WaitGone(id, tu.Timeout) {
			t.Fatalf("%s: the exchange sending the reply did not end", what)
		}
	}
	replay("answer")
	expect(t, outcome(t, b.h, id), true, handler.ReasonOK)
	// Free replays, then charged ones the budget still covers.
	for i := range attempts + burst {
		if r := raw.send(b.h, req); r != pb.Reason_OK {
			t.Fatalf("resend %d: %v", i, r)
		}
		replay("replay")
	}
	raw.post(b.h, req, false) // its ack may be cut off with the peer
	cl := tu.NextMatch(t, b.h.Priority(), func(c *handler.ConnectionLimit) bool { return c.Peer == ir.ID })
	if cl.Reason != ratelimit.ProtocolViolation {
		t.Fatalf("limit %+v", cl)
	}
}
