package handler_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// TestRetryOfUnansweredRequestEndsAtOnce: a request whose responder's
// application never answered ends on both sides (reply_timeout) and is a
// dead letter on the dialer. Retried while the responder still remembers
// its ID, it must not be delivered again (effectively once), and it cannot
// be answered: the responder refuses it unanswered, and the dialer ends it
// at once, dead-lettered again with ErrUnanswered, instead of waiting
// (and resending) for a reply that never comes. The responder may be
// durable, restarted meanwhile (its store remembers), or ephemeral.
func TestRetryOfUnansweredRequestEndsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		restart bool // restart the durable responder before the retry
		durable bool
	}{
		{"durable", false, true},
		{"durable restarted", true, true},
		{"ephemeral", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The dialer's reply deadline is long: without the refusal,
			// its retry would wait for it, not end at once.
			const replyTimeout = 300 * time.Millisecond
			ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
			list := tu.Allowlist(t, ia, ib)
			opts := []handler.Option{handler.WithRetry(3, 10*time.Millisecond, 50*time.Millisecond),
				handler.WithReplyTimeout(replyTimeout)}
			a := newNode(t, ia, list, opts...)
			var b *handler.Handler
			var bn *node
			if tc.durable {
				bn = newNode(t, ib, list, opts...)
				b = bn.h
			} else {
				b = newHandler(t, ib, list, opts...)
			}
			id, err := a.h.Request(ib.ID, addr(b), []byte("q"))
			if err != nil {
				t.Fatal(err)
			}
			if req := nextRequest(t, b); req.Exchange != id {
				t.Fatalf("request %+v", req)
			}
			expect(t, outcome(t, b, id), false, handler.ReasonReplyTimeout) // never answered
			// reply_timeout; or, when the responder's deadline came first
			// and it closed the connection, the dialer's resend on a new
			// one is refused unanswered.
			if o := outcome(t, a.h, id); !oneOf(o.Reason, handler.ReasonReplyTimeout, handler.ReasonUnanswered) || !o.DeadLettered {
				t.Fatalf("first outcome %+v", o)
			}
			if tc.restart {
				bn.restart(false)
				b = bn.h
			}

			if err := a.h.RetryDeadLetters(id); err != nil {
				t.Fatal(err)
			}
			o := outcome(t, a.h, id)
			expect(t, o, false, handler.ReasonUnanswered)
			var ae *handler.AckError
			if !o.DeadLettered || o.Attempts != 1 || !errors.Is(o.Err, handler.ErrUnanswered) ||
				!errors.As(o.Err, &ae) || ae.Reason != p2p.ReasonUnanswered {
				t.Fatalf("retry's outcome %+v (err %v)", o, o.Err)
			}
			dls, err := a.st.DeadLetters()
			if err != nil || len(dls) != 1 || dls[0].Reason != string(handler.ReasonUnanswered) || dls[0].Error != o.Err.Error() {
				t.Fatalf("dead letters %+v, %v", dls, err)
			}
			tu.None[*handler.Request](t, b.Events(), 50*time.Millisecond)
		})
	}
}
