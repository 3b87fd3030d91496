package handler_test

import (
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// Close fails queued exchanges at once and those in flight at the deadline,
// each with ReasonClosed, then closes the channels.
func TestCloseFailsExchangesInFlight(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := newHandler(t, ia, list, func(c *handler.Config) { c.CloseTimeout = 200 * time.Millisecond })
	b := newHandler(t, ib, list)
	active, _ := a.Request(b.PeerID(), addr(b), []byte("q"))
	queued, _ := a.Request(b.PeerID(), addr(b), []byte("q2"))
	tu.Next[*handler.Request](t, b.Events()) // never answered
	if !a.WaitState(active, handler.StateAwaitReply, tu.Timeout) {
		t.Fatal("request never acknowledged")
	}

	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("Close returned after %s, before the deadline", d)
	}
	stages := map[handler.ExchangeID]handler.State{}
	for ev := range a.Outcomes() {
		if o, ok := ev.(*handler.Outcome); ok {
			expect(t, o, false, handler.ReasonClosed)
			if !errors.Is(o.Err, handler.ErrClosed) {
				t.Fatalf("outcome %+v", o)
			}
			stages[o.Exchange] = o.Stage
		}
	}
	if stages[active] != handler.StateAwaitReply || stages[queued] != handler.StateQueued {
		t.Fatalf("stages %v", stages)
	}
	if _, err := a.Request(b.PeerID(), addr(b), nil); !errors.Is(err, handler.ErrClosed) {
		t.Fatalf("request after close: %v", err)
	}
	if err := a.Response(b.PeerID(), 1, nil); !errors.Is(err, handler.ErrClosed) {
		t.Fatalf("response after close: %v", err)
	}
	if _, ok := <-a.Events(); ok {
		t.Fatal("events channel still open")
	}
	a.Close() // again: a no-op
}

// Close waits for an exchange in flight that completes within the deadline.
func TestCloseWaitsForExchangeInFlight(t *testing.T) {
	a, b := pair(t, func(c *handler.Config) { c.CloseTimeout = tu.Timeout })
	id, _ := a.Request(b.PeerID(), addr(b), []byte("q"))
	req := tu.Next[*handler.Request](t, b.Events())
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	// Close has begun once new requests are refused.
	for {
		if _, err := a.Request(b.PeerID(), addr(b), nil); errors.Is(err, handler.ErrClosed) {
			break
		}
	}
	if err := b.Response(req.From, req.Exchange, []byte("a")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(tu.Timeout):
		t.Fatal("Close did not return")
	}
	var got *handler.Outcome
	for ev := range a.Outcomes() {
		if o, ok := ev.(*handler.Outcome); ok && o.Exchange == id {
			got = o
		}
	}
	expect(t, got, true, handler.ReasonOK)
}

// Once Close is called no exchange starts, even if the loop takes the
// connection's close (which frees the peer for the exchanges queued behind
// a spent connection) before Close's command: Close does not wait for one
// it let start. The hook holds the loop on that close until Close has
// begun, so the close is always taken first.
func TestCloseStartsNoQueuedExchange(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	var (
		a      *handler.Handler
		armed  atomic.Bool
		closed = make(chan error, 1)
	)
	hold := func(ev p2p.Event) {
		if _, ok := ev.(p2p.Disconnected); !ok || !armed.CompareAndSwap(true, false) {
			return
		}
		go func() { closed <- a.Close() }()
		// The loop is here, so Close is blocked handing it its command;
		// it has begun once new requests are refused.
		deadline := time.Now().Add(tu.Timeout)
		for {
			if _, err := a.Request(ib.ID, nil, nil); errors.Is(err, handler.ErrClosed) {
				return
			}
			if time.Now().After(deadline) {
				t.Error("Close never began")
				return
			}
			runtime.Gosched()
		}
	}
	a = newHandler(t, ia, list, handler.WithObserver(hold), func(c *handler.Config) { c.CloseTimeout = time.Second })
	b := newHandler(t, ib, list)
	active, _ := a.Request(b.PeerID(), addr(b), []byte("q"))
	queued, _ := a.Request(b.PeerID(), addr(b), []byte("q2"))
	req := tu.Next[*handler.Request](t, b.Events())
	armed.Store(true)
	if err := b.Response(req.From, req.Exchange, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	stages := map[handler.ExchangeID]*handler.Outcome{}
	for ev := range a.Outcomes() {
		if o, ok := ev.(*handler.Outcome); ok {
			stages[o.Exchange] = o
		}
	}
	expect(t, stages[active], true, handler.ReasonOK)
	if o := stages[queued]; o == nil || o.Reason != handler.ReasonClosed || o.Stage != handler.StateQueued {
		t.Fatalf("queued exchange ended %+v, want closed while queued", o)
	}
}

// A handler whose node stops under it fails its exchanges and closes.
func TestNodeStopped(t *testing.T) {
	a, b := pair(t)
	id, _ := a.Request(b.PeerID(), addr(b), []byte("q"))
	tu.Next[*handler.Request](t, b.Events())
	a.Node().Close()
	o := outcome(t, a, id)
	expect(t, o, false, handler.ReasonClosed)
	for range a.Outcomes() {
	}
	if _, err := a.Send(b.PeerID(), nil, nil); !errors.Is(err, handler.ErrClosed) {
		t.Fatalf("send after stop: %v", err)
	}
}
