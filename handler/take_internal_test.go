package handler

import (
	"bytes"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// unstarted builds a handler whose loop never runs, and starts another,
// r, that allowlists it; both keep their connections, so that nothing
// but the exchanges a test makes reaches h.
func unstarted(t *testing.T) (h, r *Handler) {
	t.Helper()
	me, other := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, me, other)
	h, err := build(Config{Node: p2p.Config{Key: me.Key, Allowlist: list}, IdleTimeout: -1, KeepConnection: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.teardown)
	h.running = true // as the loop would say, had it begun
	r, err = NewWithConfig(Config{Node: p2p.Config{Key: other.Key, Allowlist: list}, IdleTimeout: -1, KeepConnection: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return h, r
}

// exchange makes one exchange from r to h, h answering, and waits for its
// Outcome at both ends.
func exchangeWith(t *testing.T, h, r *Handler, msg []byte) {
	t.Helper()
	id, err := r.Request(h.self, h.Addrs()[0], msg)
	if err != nil {
		t.Fatal(err)
	}
	req := tu.Next[*Request](t, h.Events())
	if req.Exchange != id || !bytes.Equal(req.Data, msg) {
		t.Fatalf("request %+v, want exchange %s with %q", req, id, msg)
	}
	if err := h.Response(req.From, req.Exchange, []byte("answer")); err != nil {
		t.Fatal(err)
	}
	if rep := tu.Next[*Reply](t, r.Events()); rep.Exchange != id {
		t.Fatalf("reply %+v, want exchange %s", rep, id)
	}
	for _, x := range []*Handler{r, h} {
		if o := tu.NextMatch(t, x.Outcomes(), func(o *Outcome) bool { return o.Exchange == id }); !o.OK {
			t.Fatalf("outcome %+v", o)
		}
	}
}

// A stream's reader applies the deliveries it made itself (taker.Take): a
// handler whose loop never runs still takes requests, answers them, and
// ends its side of each exchange when the reply's ack comes, so no
// goroutine hand-off to the loop sits between a message and the
// application.
func TestReaderAppliesItsDeliveries(t *testing.T) {
	h, r := unstarted(t)
	for i := range 3 {
		exchangeWith(t, h, r, []byte{'q', byte(i)})
	}
}

// A reader that finds mu taken leaves its deliveries in the node's channel
// and rings the loop, which takes them in order once mu is free.
func TestTakeLeavesToTheLoopWhenLocked(t *testing.T) {
	h, r := unstarted(t)
	exchangeWith(t, h, r, []byte("first")) // connected, and nothing owed
	select {
	case <-h.bell: // Connected rang it
	default:
	}

	h.mu.Lock() // held as by an API call, or by the loop
	id, err := r.Request(h.self, nil, []byte("second"))
	if err != nil {
		h.mu.Unlock()
		t.Fatal(err)
	}
	select {
	case <-h.bell:
	case <-time.After(tu.Timeout):
		h.mu.Unlock()
		t.Fatal("the reader left the request without ringing the loop")
	}
	waiting := len(h.node.Deliveries())
	h.mu.Unlock()
	if waiting != 1 {
		t.Fatalf("%d deliveries wait in the node's channel, want the request", waiting)
	}
	tu.None[*Request](t, h.Events(), 50*time.Millisecond)

	h.mu.Lock()
	h.drainData(&inputs{data: h.node.Deliveries()}) // the loop's wake
	req := tu.Next[*Request](t, h.Events())
	if req.Exchange != id {
		t.Fatalf("request %+v, want exchange %s", req, id)
	}
	// Answered, so that r's Close does not wait for it.
	if err := h.Response(req.From, req.Exchange, []byte("answer")); err != nil {
		t.Fatal(err)
	}
	if o := tu.NextMatch(t, r.Outcomes(), func(o *Outcome) bool { return o.Exchange == id }); !o.OK {
		t.Fatalf("outcome %+v", o)
	}
}
