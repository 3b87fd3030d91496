package handler_test

import (
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// warmPair starts a, which may have two exchanges out to b, and b, whose
// node acks every message at once (a negative AckDelay), so that no held
// ack flushes a stream of b's; both keep the connection. One exchange is
// made first, so that each node has the stream to write to from the
// calling goroutine (Send's fast way), which is what defers a flush.
func warmPair(t *testing.T) (a, b *handler.Handler) {
	t.Helper()
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	keep := []handler.Option{handler.WithKeepConnection(true), handler.WithIdleTimeout(-1)}
	a = newHandler(t, ia, list, append(keep, handler.WithMaxConcurrentPerPeer(2))...)
	b = newHandler(t, ib, list, append(keep, handler.WithNode(func(c *p2p.Config) { c.AckDelay = -1 }))...)
	id, err := a.Request(b.PeerID(), b.Addrs()[0], []byte("warm"))
	if err != nil {
		t.Fatal(err)
	}
	answer(t, b, tu.Next[*handler.Request](t, b.Events()))
	if rep := tu.Next[*handler.Reply](t, a.Events()); rep.Exchange != id {
		t.Fatalf("reply %+v, want the warm-up's", rep)
	}
	return a, b
}

func answer(t *testing.T, b *handler.Handler, r *handler.Request) {
	t.Helper()
	if err := b.Response(r.From, r.Exchange, []byte("answer")); err != nil {
		t.Fatal(err)
	}
}

func request(t *testing.T, a, b *handler.Handler, msg string) handler.ExchangeID {
	t.Helper()
	id, err := a.Request(b.PeerID(), nil, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A Response made while another request waits for its answer leaves its
// reply buffered for the loop to flush, so that the answers that follow
// share the write (endCall); the loop flushes it even if the other answer
// never comes: here nothing else would write b's stream.
func TestReplyLeftForTheLoopLeaves(t *testing.T) {
	a, b := warmPair(t)
	first := request(t, a, b, "first")
	request(t, a, b, "second")
	var mine, other *handler.Request
	for range 2 {
		if r := tu.Next[*handler.Request](t, b.Events()); r.Exchange == first {
			mine = r
		} else {
			other = r
		}
	}
	answer(t, b, mine)
	if rep := tu.Next[*handler.Reply](t, a.Events()); rep.Exchange != first {
		t.Fatalf("reply %+v, want the first exchange's", rep)
	}
	// Answered now, so that the Closes need not wait for it.
	answer(t, b, other)
	tu.Next[*handler.Reply](t, a.Events())
}

// A Request to a peer with another exchange of ours out leaves its
// message buffered for the loop in the same way (a requester making many
// at once), and the loop flushes it even if no other call follows: here
// nothing else would write a's stream.
func TestRequestLeftForTheLoopLeaves(t *testing.T) {
	a, b := warmPair(t)
	request(t, a, b, "first") // the only one out: flushed by its call
	first := tu.Next[*handler.Request](t, b.Events())
	second := request(t, a, b, "second") // alongside the first
	r := tu.Next[*handler.Request](t, b.Events())
	if r.Exchange != second {
		t.Fatalf("request %+v, want the second", r)
	}
	answer(t, b, first)
	answer(t, b, r)
}
