package handler_test

import (
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// TestResendAfterDedupeEvictionCountedOnce: a resend of an exchange the
// application still holds, arriving after the peer's dedupe record of it
// was evicted (DedupePerPeer), is not delivered again and does not take a
// second inbox slot: once the application has handled everything, the
// peer again has its MaxInboxPerPeer slots.
func TestResendAfterDedupeEvictionCountedOnce(t *testing.T) {
	ih, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ih, ir)
	n := newNode(t, ih, list, func(c *handler.Config) {
		c.DedupePerPeer = 1
		c.MaxInboxPerPeer = 3
		c.ReplyTimeout = time.Minute
		// One connection throughout: with automatic disconnection the
		// node may close it between the raw peer's connect and its new
		// stream, which is not what this test is about.
		c.KeepConnection = true
	})
	h := n.h
	r := newRawPeer(t, ir, "127.0.0.1")
	send := func(k hpb.Kind, id handler.ExchangeID) {
		t.Helper()
		if got := r.send(h, envelope(k, id, []byte("x"))); got != pb.Reason_OK {
			t.Fatalf("%v %d: %v", k, id, got)
		}
	}
	handle := func(ev handler.Event) {
		t.Helper()
		var err error
		switch e := ev.(type) {
		case *handler.Request:
			if err = h.Response(e.From, e.Exchange, []byte("re")); err == nil {
				// Its reply holds the slot until the raw peer acks
				// it, which ends the exchange.
				tu.NextMatch(t, h.Outcomes(), func(o *handler.Outcome) bool {
					return o.Peer == e.From && o.Exchange == e.Exchange
				})
			}
		case *handler.Message:
			err = h.Ack(e.From, e.Exchange)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		base handler.ExchangeID
		k    hpb.Kind
	}{{10, hpb.Kind_KIND_REQUEST}, {20, hpb.Kind_KIND_MESSAGE}} {
		base, k := c.base, c.k
		// The application takes two and handles neither yet.
		send(k, base+1)
		send(k, base+2) // evicts the dedupe record of the first
		ev1, ev2 := tu.Next[handler.Event](t, h.Events()), tu.Next[handler.Event](t, h.Events())
		// The first again, as a dialer that lost its ack resends it.
		send(k, base+1)
		tu.None[handler.Event](t, h.Events(), 100*time.Millisecond)
		handle(ev1)
		handle(ev2)
		// All three slots are free again.
		for id := base + 3; id <= base+5; id++ {
			send(k, id)
		}
		for range 3 {
			handle(tu.Next[handler.Event](t, h.Events()))
		}
	}
}
