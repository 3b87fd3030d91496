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
