package handler_test

import (
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// A call's message waits in the stream's buffer while another call waits
// to follow it, and the last call of the run flushes them all: calls from
// several goroutines at once share writes, and none is left unsent.
func TestCallsShareTheLastFlush(t *testing.T) {
	a, b := pair(t, func(c *handler.Config) { c.KeepConnection = true })
	echo(t, b)
	// The first exchange opens the connection and the stream.
	id, err := a.Request(b.PeerID(), addr(b), []byte("open"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a, id), true, handler.ReasonOK)

	a.CallsWaiting(1) // another call waits for the handler
	first, err := a.Request(b.PeerID(), nil, []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	if n := a.Deferred(); n != 1 {
		t.Fatalf("%d messages left for the next call, want 1", n)
	}
	a.CallsWaiting(-1) // and comes now, the last of its run
	second, err := a.Request(b.PeerID(), nil, []byte("second"))
	if err != nil {
		t.Fatal(err)
	}
	if n := a.Deferred(); n != 0 {
		t.Fatalf("%d messages left unflushed by the last call", n)
	}
	expect(t, outcome(t, a, first), true, handler.ReasonOK)
	expect(t, outcome(t, a, second), true, handler.ReasonOK)
}

// Calls that keep coming still flush every maxDeferred messages.
func TestDeferredMessagesAreBounded(t *testing.T) {
	a, b := pair(t, func(c *handler.Config) { c.KeepConnection = true; c.MaxConcurrentPerPeer = 64 })
	echo(t, b)
	id, err := a.Request(b.PeerID(), addr(b), []byte("open"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a, id), true, handler.ReasonOK)

	a.CallsWaiting(1) // a call always waits: the run never ends
	defer a.CallsWaiting(-1)
	var ids []handler.ExchangeID
	for range 40 {
		id, err := a.Request(b.PeerID(), nil, []byte("more"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if n := a.Deferred(); n >= 16 {
			t.Fatalf("%d messages left buffered", n)
		}
	}
	// Those flushed (the first 32) end, whatever became of the rest.
	want := make(map[handler.ExchangeID]bool)
	for _, id := range ids[:32] {
		want[id] = true
	}
	for len(want) > 0 {
		o := tu.NextMatch(t, a.Outcomes(), func(*handler.Outcome) bool { return true })
		if want[o.Exchange] {
			expect(t, o, true, handler.ReasonOK)
			delete(want, o.Exchange)
		}
	}
}
