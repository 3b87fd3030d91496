package handler_test

import (
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// Config.Observe sees the node's events the handler keeps to itself: both
// sides' Connected, the ack of the request (a Status), the data, and
// Disconnected once the exchange's connection closes. The handler still
// works as usual.
func TestObserveSeesNodeEvents(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	// Buffered well beyond what one exchange produces: an observer must
	// never block, so a full channel would drop (and fail the test below).
	seenA, seenB := make(chan p2p.Event, 256), make(chan p2p.Event, 256)
	observer := func(ch chan p2p.Event) handler.Option {
		return handler.WithObserver(func(ev p2p.Event) {
			select {
			case ch <- ev:
			default:
				t.Errorf("observer channel full: %T dropped", ev)
			}
		})
	}
	a := newHandler(t, ia, list, observer(seenA))
	b := newHandler(t, ib, list, observer(seenB))
	echo(t, b)

	id, err := a.Request(ib.ID, addr(b), []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a, id), true, handler.ReasonOK)

	if c := tu.Next[p2p.Connected](t, seenA); c.Peer != ib.ID || c.Inbound {
		t.Fatalf("a observed %+v", c)
	}
	if c := tu.Next[p2p.Connected](t, seenB); c.Peer != ia.ID || !c.Inbound {
		t.Fatalf("b observed %+v", c)
	}
	if st := tu.Next[p2p.Status](t, seenA); !st.OK || st.Peer != ib.ID {
		t.Fatalf("a observed %+v", st)
	}
	if d := tu.Next[p2p.Data](t, seenB); d.From != ia.ID {
		t.Fatalf("b observed %+v", d)
	}
	// The responder closes the connection once its reply is acked.
	if d := tu.Next[p2p.Disconnected](t, seenA); d.Peer != ib.ID {
		t.Fatalf("a observed %+v", d)
	}
}
