package handler_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// TestEphemeralInboxBoundedPerPeer: without a store, Config.MaxInboxPerPeer
// still bounds the requests one peer has waiting for the application's
// answer. Each one held is an exchange, a reply timer and its payload for
// up to ReplyTimeout; unbounded, a listed peer sending fresh requests as
// fast as they are acked (nothing it sends is misbehaviour) grows the
// victim's memory with its rate. Past the bound it hears busy; another
// peer is still served.
func TestEphemeralInboxBoundedPerPeer(t *testing.T) {
	ia, ib, ic := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib, ic)
	retry := handler.WithRetry(2, time.Millisecond, time.Millisecond)
	b := newHandler(t, ib, list, func(c *handler.Config) { c.MaxInboxPerPeer = 2; c.ReplyTimeout = time.Minute })
	a := newHandler(t, ia, list, retry, handler.WithMaxConcurrentPerPeer(3))
	c := newHandler(t, ic, list, retry)
	// One at a time: requests a peer pipelines may all be judged before
	// the first reaches the loop (inboxFull).
	for i := range 3 {
		id, err := a.Request(ib.ID, addr(b), fmt.Appendf(nil, "a%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			tu.NextMatch(t, b.Events(), func(r *handler.Request) bool { return r.From == ia.ID && r.Exchange == id })
			continue
		}
		expect(t, outcome(t, a, id), false, handler.ReasonNotAcked)
	}
	id, err := c.Request(ib.ID, addr(b), []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	r := tu.NextMatch(t, b.Events(), func(r *handler.Request) bool { return r.From == ic.ID })
	if err := b.Response(r.From, r.Exchange, []byte("for c")); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, c, id), true, handler.ReasonOK)
}
