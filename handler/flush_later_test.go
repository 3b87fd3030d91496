package handler_test

import (
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// A Response made while another request waits for its answer leaves its
// reply buffered for the loop to flush, so that the answers that follow
// share the write (endCall); the loop flushes it even if the other answer
// never comes. Here nothing else would: the responder's node acks every
// request at once (a negative AckDelay), so no held ack flushes the
// stream, and the second request is never answered.
func TestReplyLeftForTheLoopLeaves(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	start := func(id tu.Identity, mutate func(*handler.Config)) *handler.Handler {
		c := handler.Config{Node: p2p.Config{Key: id.Key, Allowlist: list}, KeepConnection: true, IdleTimeout: -1}
		mutate(&c)
		h, err := handler.NewWithConfig(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	a := start(ia, func(c *handler.Config) { c.MaxConcurrentPerPeer = 2 })
	b := start(ib, func(c *handler.Config) { c.Node.AckDelay = -1 })

	// A first exchange, so that b's node has the stream to write to from
	// the calling goroutine (Send's fast way), which is what defers.
	warm, err := a.Request(b.PeerID(), b.Addrs()[0], []byte("warm"))
	if err != nil {
		t.Fatal(err)
	}
	r := tu.Next[*handler.Request](t, b.Events())
	if err := b.Response(r.From, r.Exchange, nil); err != nil {
		t.Fatal(err)
	}
	if rep := tu.Next[*handler.Reply](t, a.Events()); rep.Exchange != warm {
		t.Fatalf("reply %+v, want the warm-up's", rep)
	}

	first, err := a.Request(b.PeerID(), nil, []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Request(b.PeerID(), nil, []byte("second")); err != nil {
		t.Fatal(err)
	}
	var answer, other *handler.Request
	for range 2 {
		if r := tu.Next[*handler.Request](t, b.Events()); r.Exchange == first {
			answer = r
		} else {
			other = r
		}
	}
	if err := b.Response(answer.From, answer.Exchange, []byte("answer")); err != nil {
		t.Fatal(err)
	}
	if rep := tu.Next[*handler.Reply](t, a.Events()); rep.Exchange != first || string(rep.Data) != "answer" {
		t.Fatalf("reply %+v, want the first exchange's", rep)
	}
	// Answered now, so that the Closes need not wait for it.
	if err := b.Response(other.From, other.Exchange, nil); err != nil {
		t.Fatal(err)
	}
	tu.Next[*handler.Reply](t, a.Events())
}
