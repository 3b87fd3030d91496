package handler_test

import (
	"fmt"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// replyAckedWhileBehind brings a requester a to the state both tests
// below start from: its request id has been answered, its node has acked
// the reply (b's exchange ended ok), and its loop, paused behind an
// application that stopped reading after two messages from b, has not
// taken the reply yet.
func replyAckedWhileBehind(t *testing.T) (a *handler.Handler, id handler.ExchangeID) {
	t.Helper()
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a = newHandler(t, ia, list, func(c *handler.Config) { c.EventBuffer, c.MaxBacklog = 1, 1 })
	b := newHandler(t, ib, list)
	id, err := a.Request(ib.ID, addr(b), []byte("q"))
	if err != nil {
		t.Fatal(err)
	}
	req := nextRequest(t, b)
	// a's application stops reading: two messages fill its channel and
	// backlog, and its loop stops taking data.
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
	// The reply: a's node acks it, b's exchange ends ok.
	if err := b.Response(req.From, req.Exchange, []byte("r")); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, b, req.Exchange), true, handler.ReasonOK)
	return a, id
}

// catchUp is a's application reading again: the two messages, then the
// reply, then an ok Outcome for id.
func catchUp(t *testing.T, a *handler.Handler, id handler.ExchangeID) {
	t.Helper()
	var got []string
	for len(got) < 3 {
		switch e := tu.Next[handler.Event](t, a.Events()).(type) {
		case *handler.Message:
			got = append(got, string(e.Data))
		case *handler.Reply:
			got = append(got, string(e.Data))
		}
	}
	if got[2] != "r" {
		t.Fatalf("events %q", got)
	}
	expect(t, outcome(t, a, id), true, handler.ReasonOK)
}

// TestAckedReplyNotDroppedWhileBehind: a reply our node acknowledged is
// not dropped when the requester's application has fallen behind, so
// that the loop does not take it before the reply deadline: the peer was
// told we took it, and its Outcome says ok. The deadline waits for it.
func TestAckedReplyNotDroppedWhileBehind(t *testing.T) {
	a, id := replyAckedWhileBehind(t)
	// a's reply deadline passes before its loop takes the reply.
	if !a.FireDeadline(id) {
		t.Fatal("a's request has no deadline armed")
	}
	catchUp(t, a, id)
}
