package handler_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// TestOverflowedResendOfHandledNotEmpty: a resend of a request or message
// the application has handled, arriving once its dedupe record is gone
// from memory (DedupePerPeer) but not from the inbox, leaves the inbox
// record as it is (answered or handled, without its payload). When it
// overflows (the application behind), the loop reads that record back: it
// must not hand the application a Request or Message without its payload,
// as if the peer had sent an empty one.
func TestOverflowedResendOfHandledNotEmpty(t *testing.T) {
	for _, k := range []hpb.Kind{hpb.Kind_KIND_REQUEST, hpb.Kind_KIND_MESSAGE} {
		t.Run(k.String(), func(t *testing.T) { overflowedResendOfHandled(t, k) })
	}
}

func overflowedResendOfHandled(t *testing.T, k hpb.Kind) {
	ih, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ih, ir)
	n := newNode(t, ih, list, func(c *handler.Config) {
		c.DedupePerPeer = 1
		c.KeepConnection = true
		c.ReplyTimeout = time.Minute
		c.EventBuffer, c.MaxBacklog, c.Node.ReceiverBuffer = 1, 1, 1
	})
	h := n.h
	r := newRawPeer(t, ir, "127.0.0.1")
	send := func(id handler.ExchangeID) {
		t.Helper()
		if got := r.send(h, envelope(k, id, fmt.Appendf(nil, "d%d", id))); got != pb.Reason_OK {
			t.Fatalf("%v %d: %v", k, id, got)
		}
	}
	// handle checks what the application got, and handles it.
	handle := func(ev handler.Event) handler.ExchangeID {
		t.Helper()
		var (
			id   handler.ExchangeID
			data []byte
			err  error
		)
		switch e := ev.(type) {
		case *handler.Request:
			id, data = e.Exchange, e.Data
			err = h.Response(e.From, e.Exchange, []byte("re"))
		case *handler.Message:
			id, data = e.Exchange, e.Data
			err = h.Ack(e.From, e.Exchange)
		default:
			t.Fatalf("event %+v", ev)
		}
		if want := fmt.Sprintf("d%d", id); string(data) != want {
			t.Fatalf("%s delivered with %q, want %q", id, data, want)
		}
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	// 1 is delivered, then evicted from the dedupe by 2 while the
	// application holds it; then both are handled.
	send(1)
	ev1 := tu.Next[handler.Event](t, h.Events())
	send(2)
	handle(ev1)
	handle(tu.Next[handler.Event](t, h.Events()))
	if k == hpb.Kind_KIND_REQUEST {
		// Both replies acked and their exchanges ended: a resend of a
		// request whose reply still awaits its ack is the exchange
		// running, not one the inbox holds (answered busy while the
		// application is behind, as any data it has no room for).
		r.next()
		r.next()
		ended := map[handler.ExchangeID]bool{}
		for len(ended) < 2 {
			o := tu.NextMatch(t, h.Outcomes(), func(o *handler.Outcome) bool { return o.Role == handler.Responder })
			ended[o.Exchange] = true
		}
	}
	// The application falls behind: the loop pauses, then the node's
	// Receiver fills; the resend of 1 overflows.
	send(3)
	send(4)
	if !h.WaitPaused(tu.Timeout) {
		t.Fatal("the loop never paused")
	}
	send(5) // the Receiver's one slot
	send(1)
	// The application catches up.
	fillers := map[handler.ExchangeID]bool{3: true, 4: true, 5: true}
	for len(fillers) > 0 {
		delete(fillers, handle(tu.Next[handler.Event](t, h.Events())))
	}
	select {
	case ev := <-h.Events():
		handle(ev)
	case <-time.After(200 * time.Millisecond):
	}
}
