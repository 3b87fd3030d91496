package handler_test

import (
	"sync/atomic"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// Automatic disconnection, MaxConcurrentPerPeer 2, three requests to one
// peer. The peer answers the first two back to back; our node acks each
// reply as it arrives, and the peer, having had the last word on both,
// closes at once (as a default handler does: it learns last). But our
// handler took the first reply while the second exchange was still active,
// and started the queued third one on that connection, which the peer
// knows nothing of when it closes: the request is cut (connection_lost) and
// has to be sent again. A connection on which an exchange has ended may
// close at any moment; in automatic mode a queued exchange must wait for
// a fresh one.
func TestQueuedExchangeNotStartedOnSpentConnection(t *testing.T) {
	h, r := rawPair(t, handler.WithMaxConcurrentPerPeer(2))
	var x3 atomic.Uint64
	var closed, cut atomic.Bool
	r.setPolicy(func(env *hpb.Envelope, _ int) pb.Reason {
		if env.Exchange == x3.Load() && !closed.Load() {
			cut.Store(true) // the peer closes before reading it
			return noAck
		}
		return pb.Reason_OK
	})
	var ids [3]handler.ExchangeID
	for i := range ids {
		id, err := h.Request(r.id.ID, r.addr(), []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
		if i == 2 {
			x3.Store(uint64(id))
		}
	}
	first, second := r.next(), r.next()
	// The peer replies to both; our node acks each reply at once.
	for _, env := range []*hpb.Envelope{first, second} {
		if got := r.send(h, envelope(hpb.Kind_KIND_REPLY, handler.ExchangeID(env.Exchange), nil)); got != pb.Reason_OK {
			t.Fatalf("reply acked %v", got)
		}
	}
	expect(t, outcome(t, h, ids[0]), true, handler.ReasonOK)
	expect(t, outcome(t, h, ids[1]), true, handler.ReasonOK)
	// Snapshot takes the loop's lock: the loop has settled both ends.
	if h.Snapshot().Peers[r.id.ID].Queued == 0 {
		// Started on the connection: it is on its way to the peer.
		if env := r.next(); env.Exchange != x3.Load() {
			t.Fatalf("unexpected envelope %v", env)
		}
	}
	// The peer had the last word on every exchange it knows: it closes.
	closed.Store(true)
	r.host.Network().ClosePeer(h.PeerID())
	// The third request reaches the peer on a fresh connection.
	for {
		env := r.next()
		if env.Exchange == x3.Load() && env.Kind == hpb.Kind_KIND_REQUEST {
			r.send(h, envelope(hpb.Kind_KIND_REPLY, ids[2], nil))
			break
		}
	}
	o := outcome(t, h, ids[2])
	expect(t, o, true, handler.ReasonOK)
	if cut.Load() || o.Attempts != 1 {
		t.Fatalf("the third request was sent on the connection the peer was closing (cut %v), %d attempts", cut.Load(), o.Attempts)
	}
}
