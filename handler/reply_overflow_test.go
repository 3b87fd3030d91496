package handler_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// replyBehindFullReceiver brings a requester a to this state: its request
// id has been answered, and its application stopped reading after three
// messages from b, the last of which fills a's node's Receiver, so that the
// reply finds no room there.
func replyBehindFullReceiver(t *testing.T, opts ...handler.Option) (a, b *handler.Handler, id handler.ExchangeID) {
	t.Helper()
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a = newHandler(t, ia, list, append(opts, func(c *handler.Config) {
		c.EventBuffer, c.MaxBacklog, c.Node.ReceiverBuffer = 1, 1, 1
	})...)
	b = newHandler(t, ib, list, opts...)
	id, err := a.Request(ib.ID, addr(b), []byte("q"))
	if err != nil {
		t.Fatal(err)
	}
	req := nextRequest(t, b)
	for i := range 2 {
		mid, err := b.Send(ia.ID, nil, fmt.Appendf(nil, "m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		expect(t, outcome(t, b, mid), true, handler.ReasonOK)
	}
	if !a.WaitPaused(tu.Timeout) {
		t.Fatal("a's loop never paused")
	}
	// The Receiver's one slot.
	mid, err := b.Send(ia.ID, nil, []byte("m2"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, b, mid), true, handler.ReasonOK)
	if err := b.Response(req.From, req.Exchange, []byte("r")); err != nil {
		t.Fatal(err)
	}
	return a, b, id
}

// TestReplyNotRefusedWhenReceiverFull: a reply our handler takes (accept
// marks its request as having it) is not then refused busy by the node
// for want of room in its Receiver. It was: the responder heard busy while
// our request counted the reply as taken, so Cancel refused to cancel it
// ("our node took the reply"), and its deadline was stretched for a reply
// the node had refused. The reply is acked OK and held until the
// application has room: the responder's exchange ends ok, and ours
// completes with the reply.
func TestReplyNotRefusedWhenReceiverFull(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprintf("durable=%v", durable), func(t *testing.T) {
			var opts []handler.Option
			if durable {
				opts = append(opts, func(c *handler.Config) { c.Store = newFaultStore(t) })
			}
			a, b, id := replyBehindFullReceiver(t, opts...)
			// b's exchange: its reply is acked OK, not answered busy
			// until b gives up.
			o := tu.NextMatch(t, b.Outcomes(), func(o *handler.Outcome) bool { return o.Role == handler.Responder })
			expect(t, o, true, handler.ReasonOK)
			// So Cancel's refusal ("our node took the reply") is true.
			if err := a.Cancel(id); !errors.Is(err, handler.ErrUnknownExchange) {
				t.Fatalf("cancel of a request whose reply was acked: %v", err)
			}
			catchUpAfter(t, a, id, "m0", "m1", "m2", "r")
		})
	}
}

// catchUpAfter is a's application reading again: it wants the events'
// data (in any order: what overflowed may come before what waited in the
// Receiver), then an ok Outcome for id.
func catchUpAfter(t *testing.T, a *handler.Handler, id handler.ExchangeID, want ...string) {
	t.Helper()
	var got []string
	for len(got) < len(want) {
		switch e := tu.Next[handler.Event](t, a.Events()).(type) {
		case *handler.Message:
			got = append(got, string(e.Data))
			if err := a.Ack(e.From, e.Exchange); err != nil {
				t.Fatal(err)
			}
		case *handler.Reply:
			got = append(got, string(e.Data))
		}
	}
	slices.Sort(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	expect(t, outcome(t, a, id), true, handler.ReasonOK)
}
