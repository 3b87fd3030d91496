package handler_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// busyFirst acks "busy" to the first n envelopes, then OK.
func busyFirst(n int) func(*hpb.Envelope, int) pb.Reason {
	return func(_ *hpb.Envelope, i int) pb.Reason {
		if i <= n {
			return pb.Reason_BUSY
		}
		return pb.Reason_OK
	}
}

// A request acked "busy" is resent, with the same exchange ID, until acked.
func TestResendAfterBusyAck(t *testing.T) {
	h, raw := rawPair(t)
	raw.setPolicy(busyFirst(2))
	id, err := h.Send(raw.id.ID, raw.addr(), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if env := raw.next(); handler.ExchangeID(env.Exchange) != id || env.Kind != hpb.Kind_KIND_MESSAGE {
			t.Fatalf("send %d: %v", i, env)
		}
	}
	o := outcome(t, h, id)
	expect(t, o, true, handler.ReasonOK)
	if o.Attempts != 3 {
		t.Fatalf("attempts %d, want 3", o.Attempts)
	}
}

// Between two handlers: the responder's node buffer is full, so the request
// is refused busy and resent; the responder's application sees it once.
func TestResendBetweenHandlers(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := newHandler(t, ia, list)
	// One slot in b's node buffer, and b's loop paused after one event: the
	// first message fills everything, the next ones are refused busy until
	// the test reads.
	b := newHandler(t, ib, list, func(c *handler.Config) {
		c.Node.ReceiverBuffer = 1
		c.EventBuffer = 1
		c.MaxBacklog = 1
	}, handler.WithRetry(50, 5*time.Millisecond, 20*time.Millisecond), handler.WithKeepConnection(true))
	_ = b
	var ids []handler.ExchangeID
	for i := range 4 {
		id, err := a.Send(ib.ID, addr(b), []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// Backpressure reaches the p2p layer: b's node drops and answers busy.
	tu.Next[*handler.Dropped](t, b.Priority())
	got := map[byte]int{}
	for range 4 {
		m := tu.Next[*handler.Message](t, b.Events())
		got[m.Data[0]]++
	}
	for _, id := range ids {
		expect(t, outcome(t, a, id), true, handler.ReasonOK)
	}
	tu.None[*handler.Message](t, b.Events(), 50*time.Millisecond)
	for i := range 4 {
		if got[byte(i)] != 1 {
			t.Fatalf("message %d delivered %d times", i, got[byte(i)])
		}
	}
}

// After MaxAttempts refusals the exchange fails with the last reason.
func TestMaxAttempts(t *testing.T) {
	h, raw := rawPair(t, handler.WithRetry(3, time.Millisecond, 5*time.Millisecond))
	raw.setPolicy(busyFirst(100))
	id, err := h.Request(raw.id.ID, raw.addr(), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	o := outcome(t, h, id)
	expect(t, o, false, handler.ReasonNotAcked)
	var ae *handler.AckError
	if o.Attempts != 3 || o.State != handler.StateFailed || !errors.As(o.Err, &ae) || ae.Reason != p2p.ReasonBusy {
		t.Fatalf("outcome %+v", o)
	}
}

// A refusal that resending cannot cure fails at once.
func TestTerminalRefusal(t *testing.T) {
	h, raw := rawPair(t)
	raw.setPolicy(func(*hpb.Envelope, int) pb.Reason { return pb.Reason_NOT_ROUTED })
	id, _ := h.Request(raw.id.ID, raw.addr(), []byte("x"))
	o := outcome(t, h, id)
	expect(t, o, false, handler.ReasonNotAcked)
	if o.Attempts != 1 {
		t.Fatalf("attempts %d", o.Attempts)
	}
}

// A dial that keeps failing ends the exchange with ReasonDialFailed.
func TestDialFailure(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := newHandler(t, ia, list, handler.WithRetry(2, time.Millisecond, time.Millisecond))
	gone := newHandler(t, ib, list)
	deadAddr := addr(gone)
	gone.Close()

	id, _ := a.Request(ib.ID, deadAddr, []byte("x"))
	o := outcome(t, a, id)
	expect(t, o, false, handler.ReasonDialFailed)
	if o.Attempts != 2 || o.Stage != handler.StateDialing {
		t.Fatalf("outcome %+v", o)
	}
	// No address at all, no resolver: nothing to retry.
	ic := tu.NewIdentity(t)
	list.Add(allowEntry(ic))
	id, _ = a.Request(ic.ID, nil, []byte("x"))
	if o := outcome(t, a, id); o.Reason != handler.ReasonDialFailed || o.Attempts != 1 {
		t.Fatalf("no address: %+v", o)
	}
}

// A responder's reply refused busy is resent; one refused to the end fails.
func TestResponderResendsReply(t *testing.T) {
	// Kept connections: the raw dialer would not wait for the handler's
	// automatic disconnection before its next request, as a handler does.
	h, raw := rawPair(t, handler.WithRetry(2, time.Millisecond, 5*time.Millisecond), handler.WithKeepConnection(true))
	for round, busy := range []int{1, 2} {
		raw.setPolicy(busyFirst(busy))
		raw.mu.Lock()
		raw.n = 0
		raw.mu.Unlock()
		id := handler.ExchangeID(100 + round)
		if r := raw.send(h, envelope(hpb.Kind_KIND_REQUEST, id, []byte("q"))); r != pb.Reason_OK {
			t.Fatalf("request acked %v", r)
		}
		req := tu.Next[*handler.Request](t, h.Events())
		if err := h.Response(req.From, req.Exchange, []byte("a")); err != nil {
			t.Fatal(err)
		}
		if err := h.Response(req.From, req.Exchange, []byte("a")); !errors.Is(err, handler.ErrAlreadyResponded) {
			t.Fatalf("second response: %v", err)
		}
		o := outcome(t, h, id)
		if round == 0 {
			expect(t, o, true, handler.ReasonOK)
		} else {
			expect(t, o, false, handler.ReasonNotAcked)
		}
		if o.Role != handler.Responder || o.Attempts != 2 {
			t.Fatalf("outcome %+v", o)
		}
		// Still "already responded" once the exchange has ended, not
		// "unknown": the application did answer it.
		if err := h.Response(req.From, req.Exchange, []byte("a")); !errors.Is(err, handler.ErrAlreadyResponded) {
			t.Fatalf("response after the end: %v", err)
		}
		for range o.Attempts {
			if env := raw.next(); env.Kind != hpb.Kind_KIND_REPLY || handler.ExchangeID(env.Exchange) != id {
				t.Fatalf("envelope %v", env)
			}
		}
	}
}

// A request the dialer resends is delivered to the application once.
func TestDuplicateRequestDeliveredOnce(t *testing.T) {
	h, raw := rawPair(t, handler.WithKeepConnection(true))
	req := envelope(hpb.Kind_KIND_REQUEST, 7, []byte("q"))
	raw.send(h, req)
	raw.send(h, req)
	got := tu.Next[*handler.Request](t, h.Events())
	tu.None[*handler.Request](t, h.Events(), 50*time.Millisecond)
	h.Response(got.From, got.Exchange, []byte("a"))
	expect(t, outcome(t, h, 7), true, handler.ReasonOK)
	// Still a duplicate after the exchange completed.
	raw.send(h, req)
	msg := envelope(hpb.Kind_KIND_MESSAGE, 8, []byte("m"))
	raw.send(h, msg)
	raw.send(h, msg)
	if m := tu.Next[*handler.Message](t, h.Events()); m.Exchange != 8 {
		t.Fatalf("message %+v", m)
	}
	tu.None[handler.Event](t, h.Events(), 50*time.Millisecond)
}
