package handler_test

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// blockingResolver never answers: it returns when its context ends.
type blockingResolver struct{}

func (blockingResolver) Resolve(ctx context.Context, _ peer.ID) ([]ma.Multiaddr, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestReplyToResumedRequestIsNoFault: a request sent once before a restart
// is stored with no attempt counted (the count is written from the second
// send on), so the resumed exchange starts with attempts 0. Its reply,
// which the responder sends (redialing) while the resumed exchange has not
// sent again yet (here: it waits for the Resolver), is the answer to the
// very request the peer received. It must complete the exchange, not be
// taken for a "reply to a request not yet sent": that faults an honest
// peer, charges it a protocol violation and fails the exchange.
func TestReplyToResumedRequestIsNoFault(t *testing.T) {
	a, b := durablePair(t)
	id, req := requestWithoutAddr(t, a, b)
	if req.Exchange != id {
		t.Fatalf("request %+v, want exchange %s", req, id)
	}
	a.stop() // suspends the request, sent once
	a.opts = append(a.opts, handler.WithResolver(blockingResolver{}))
	a.start()
	if !a.h.WaitState(id, handler.StateResolving, tu.Timeout) {
		t.Fatal("the resumed request does not wait for the Resolver")
	}
	// b may not have learnt a's listen address: give it.
	b.h.Node().Host().Peerstore().AddAddr(a.id.ID, a.listen, time.Hour)
	if err := b.h.Response(req.From, req.Exchange, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	o := outcome(t, a.h, id)
	expect(t, o, true, handler.ReasonOK)
}

// TestParkedReplyBoundedByMaxAttempts: a reply refused unknown_exchange is
// parked until the dialer sends its request again, then resent. A peer
// that refuses every reply and resends its request each time keeps the
// responder's exchange alive for ever, its reply sent without end:
// MaxAttempts, which bounds the sends of every message, must bound these.
func TestParkedReplyBoundedByMaxAttempts(t *testing.T) {
	const maxAttempts = 3
	h, raw := rawPair(t, handler.WithRetry(maxAttempts, 10*time.Millisecond, 50*time.Millisecond),
		handler.WithReplyTimeout(2*tu.Timeout))
	raw.setPolicy(func(*hpb.Envelope, int) pb.Reason { return pb.Reason_UNKNOWN_EXCHANGE })
	const x = handler.ExchangeID(0x5eed)
	req := envelope(hpb.Kind_KIND_REQUEST, x, []byte("q"))
	if r := raw.send(h, req); r != pb.Reason_OK {
		t.Fatalf("request acked %v", r)
	}
	ev := tu.Next[*handler.Request](t, h.Events())
	if err := h.Response(ev.From, ev.Exchange, []byte("a")); err != nil {
		t.Fatal(err)
	}
	for sent := 1; ; sent++ {
		env := raw.next()
		if env.Kind != hpb.Kind_KIND_REPLY || handler.ExchangeID(env.Exchange) != x {
			t.Fatalf("got %v", env)
		}
		if sent > maxAttempts {
			t.Fatalf("reply sent %d times, MaxAttempts is %d", sent, maxAttempts)
		}
		// Refused unknown_exchange; the "dialer" asks again, once the
		// refusal has parked the reply (asked before, while the reply
		// awaits its ack, the request has the reply sent again as soon as
		// it is refused: the same count, in another order).
		if sent < maxAttempts && !h.WaitState(x, handler.StateBackoff, tu.Timeout) {
			t.Fatalf("reply %d not parked after its refusal", sent)
		}
		if r := raw.send(h, req); r != pb.Reason_OK {
			t.Fatalf("request resent acked %v", r)
		}
		if sent == maxAttempts {
			break
		}
	}
	select {
	case env := <-raw.got:
		t.Fatalf("reply sent %d times, MaxAttempts is %d: %v", maxAttempts+1, maxAttempts, env)
	case ev := <-h.Outcomes():
		o, ok := ev.(*handler.Outcome)
		if !ok || o.Exchange != x || o.OK {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(tu.Timeout):
		t.Fatal("no outcome")
	}
}
