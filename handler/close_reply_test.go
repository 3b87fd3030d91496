package handler_test

import (
	"fmt"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// TestOKOutcomeKeepsItsReplyThroughClose: an application that reads the
// Outcomes of its requests and is behind on Events has the reply of every
// OK Outcome, even when the handler closes before it gets to Events.
// Close hands each channel only what still fits: the Replies queued behind
// a full Events channel are dropped, while their Outcomes got out (with a
// store, the exchanges are over on disk: no later life hands them out
// again). The Outcome carries its Reply, so that it cannot be lost.
func TestOKOutcomeKeepsItsReplyThroughClose(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprintf("durable=%v", durable), func(t *testing.T) {
			small := func(c *handler.Config) { c.EventBuffer = 4 }
			var a, b *handler.Handler
			closeA := func() {}
			if durable {
				na, nb := durablePair(t, small)
				a, b, closeA = na.h, nb.h, na.stop
			} else {
				a, b = pair(t, small)
				closeA = func() { a.Close() }
			}
			echo(t, b)
			const n = 20
			sent := make(map[handler.ExchangeID]string)
			for i := range n {
				data := fmt.Sprintf("ping %d", i)
				id, err := a.Request(b.PeerID(), addr(b), []byte(data))
				if err != nil {
					t.Fatal(err)
				}
				sent[id] = data
			}
			replies := make(map[handler.ExchangeID]*handler.Reply)
			for range n {
				o := tu.Next[*handler.Outcome](t, a.Outcomes())
				data, ok := sent[o.Exchange]
				switch {
				case !ok || !o.OK:
					t.Fatalf("outcome %+v", o)
				case o.Reply == nil:
					t.Errorf("OK outcome of %s without its reply", o.Exchange)
				case o.Reply.Exchange != o.Exchange || string(o.Reply.Data) != data:
					t.Errorf("outcome of %s carries the reply %+v, want %q", o.Exchange, o.Reply, data)
				}
				replies[o.Exchange] = o.Reply
			}
			// The application gets to Events only after Close: the
			// Replies that still fit are the ones the Outcomes carry.
			closeA()
			got := 0
			for ev := range a.Events() {
				if r, ok := ev.(*handler.Reply); ok {
					got++
					if replies[r.Exchange] != r {
						t.Errorf("Reply %+v is not its Outcome's", r)
					}
				}
			}
			t.Logf("%d of %d Replies still on Events after Close", got, n)
		})
	}
}

// TestRedeliveredOutcomeCarriesItsReply: an Outcome handed out again after
// a restart (AckOutcomes) carries its Reply, handed out again before it.
func TestRedeliveredOutcomeCarriesItsReply(t *testing.T) {
	a, b := durablePair(t, func(c *handler.Config) { c.AckOutcomes = true })
	echo(t, b.h)
	id, err := a.h.Request(b.id.ID, b.addr(), []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a.h, id), true, handler.ReasonOK)
	a.restart(true) // before AckOutcome
	o := outcome(t, a.h, id)
	if !o.OK || !o.Redelivered || o.Reply == nil || string(o.Reply.Data) != "ping" || !o.Reply.Redelivered {
		t.Fatalf("redelivered outcome %+v, reply %+v", o, o.Reply)
	}
	if r := tu.Next[*handler.Reply](t, a.h.Events()); r != o.Reply {
		t.Fatalf("reply %+v is not its Outcome's %+v", r, o.Reply)
	}
}

// TestUnreadOutcomesKeptAtClose: with a store, the Outcomes that Close
// cannot hand over (the application had not read them) are kept, and the
// next start hands them out, Redelivered, each once: every Request still
// ends in exactly one Outcome the application gets. (They were dropped,
// their exchanges over on disk: no later life had them.)
func TestUnreadOutcomesKeptAtClose(t *testing.T) {
	a, b := durablePair(t, func(c *handler.Config) { c.EventBuffer = 4 })
	echo(t, b.h)
	const n = 20
	sent := make(map[handler.ExchangeID]string)
	for i := range n {
		data := fmt.Sprintf("ping %d", i)
		id, err := a.h.Request(b.id.ID, b.addr(), []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		sent[id] = data
	}
	// Every reply acked (the responder's Outcomes), none of A's Outcomes
	// read; Close lets the exchanges whose replies are in end first.
	for range n {
		tu.Next[*handler.Outcome](t, b.h.Outcomes())
	}
	got := make(map[handler.ExchangeID]int)
	take := func(h *handler.Handler, redelivered bool) {
		t.Helper()
		for ev := range h.Outcomes() {
			o, ok := ev.(*handler.Outcome)
			if !ok {
				continue
			}
			if !o.OK || o.Reply == nil || string(o.Reply.Data) != sent[o.Exchange] || o.Redelivered != redelivered {
				t.Errorf("outcome %+v (reply %+v), redelivered %v", o, o.Reply, redelivered)
			}
			got[o.Exchange]++
		}
	}
	h := a.h
	a.stop()
	take(h, false)
	kept := n - len(got)
	if kept == 0 {
		t.Fatal("every Outcome fitted: the test shows nothing")
	}
	a.start()
	for range kept {
		o := tu.Next[*handler.Outcome](t, a.h.Outcomes())
		if !o.OK || o.Reply == nil || string(o.Reply.Data) != sent[o.Exchange] || !o.Redelivered {
			t.Errorf("after the restart: outcome %+v (reply %+v)", o, o.Reply)
		}
		got[o.Exchange]++
	}
	h = a.h
	a.stop()
	take(h, true)
	if len(got) != n {
		t.Fatalf("%d of %d exchanges got an Outcome", len(got), n)
	}
	for id, k := range got {
		if k != 1 {
			t.Errorf("exchange %s: %d Outcomes", id, k)
		}
	}
	// Handed out, they are gone from the store: the next start has none.
	a.start()
	h = a.h
	a.stop()
	for ev := range h.Outcomes() {
		t.Errorf("third life: %T %+v", ev, ev)
	}
}
