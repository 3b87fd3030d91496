package handler_test

import (
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// A tool handler (RepliesOnly) that borrows a running node's key gets the
// reply to its own request, and refuses busy what the peer sends to that
// key meanwhile, on the tool's stream or on one the peer opens: the peer's
// exchanges are not acked OK (they fail not_acked once their attempts are
// spent, or resend later), and nothing reaches the tool's Events but its
// reply.
func TestRepliesOnlyTakesNothingButReplies(t *testing.T) {
	ik, ip := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ik, ip)
	keep := handler.WithKeepConnection(true)
	retry := handler.WithRetry(2, 10*time.Millisecond, 50*time.Millisecond)
	tool := newHandler(t, ik, list, keep, retry, func(c *handler.Config) { c.RepliesOnly = true })
	p := newHandler(t, ip, list, keep, retry)
	go func() {
		for ev := range p.Events() {
			if r, ok := ev.(*handler.Request); ok {
				p.Response(r.From, r.Exchange, r.Data)
			}
		}
	}()

	q, err := tool.Request(ip.ID, addr(p), []byte("q"))
	if err != nil {
		t.Fatal(err)
	}
	if r := tu.Next[*handler.Reply](t, tool.Events()); r.Exchange != q || string(r.Data) != "q" {
		t.Fatalf("tool got reply %+v", r)
	}
	expect(t, outcome(t, tool, q), true, handler.ReasonOK)

	// On the connection the tool opened (kept), then at its address.
	m, err := p.Send(ik.ID, nil, []byte("for the node"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, p, m), false, handler.ReasonNotAcked)
	r, err := p.Request(ik.ID, addr(tool), []byte("for the node too"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, p, r), false, handler.ReasonNotAcked)
	select {
	case ev := <-tool.Events():
		t.Fatalf("the tool took %T %+v", ev, ev)
	default:
	}
}
