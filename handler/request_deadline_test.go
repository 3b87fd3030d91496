package handler_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// A Request carries its Deadline: ReplyTimeout after the responder took
// it, the time from which the request may end reply_timeout. An
// application that answers later (--auto-reply retrying a reply a full
// store refused) stops at it instead of counting the timeout from when it
// read the request.
func TestRequestDeadline(t *testing.T) {
	const timeout = 2 * time.Second
	a, b := pair(t, handler.WithReplyTimeout(timeout))
	before := time.Now()
	id, err := a.Request(b.PeerID(), addr(b), []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	req := tu.Next[*handler.Request](t, b.Events())
	after := time.Now()
	if req.Deadline.Before(before.Add(timeout)) || req.Deadline.After(after.Add(timeout)) {
		t.Fatalf("deadline %s, want between %s and %s (the reply timeout after the request came)",
			req.Deadline.Format(time.RFC3339Nano), before.Add(timeout).Format(time.RFC3339Nano), after.Add(timeout).Format(time.RFC3339Nano))
	}
	o := outcome(t, b, id)
	expect(t, o, false, handler.ReasonReplyTimeout)
	if now := time.Now(); now.Before(req.Deadline) {
		t.Fatalf("the request ended reply_timeout at %s, before its deadline %s",
			now.Format(time.RFC3339Nano), req.Deadline.Format(time.RFC3339Nano))
	}
	if err := b.Response(req.From, req.Exchange, []byte("late")); !errors.Is(err, handler.ErrUnknownExchange) {
		t.Fatalf("response after the deadline: %v, want ErrUnknownExchange", err)
	}
}
