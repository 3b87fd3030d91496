package handler_test

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// exchange runs one request from a to b and waits for both outcomes.
func exchange(t *testing.T, a, b *handler.Handler) {
	t.Helper()
	id, err := a.Request(b.PeerID(), addr(b), []byte("q"))
	if err != nil {
		t.Fatal(err)
	}
	req := tu.Next[*handler.Request](t, b.Events())
	if err := b.Response(req.From, req.Exchange, []byte("a")); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a, id), true, handler.ReasonOK)
	expect(t, outcome(t, b, id), true, handler.ReasonOK)
}

// After an exchange the responder, which learns last that it completed,
// closes the connection: the dialer, lingering, would wait much longer.
func TestAutoDisconnectByResponder(t *testing.T) {
	a, b := pair(t, func(c *handler.Config) { c.Linger = time.Minute })
	w := watch(t, a, b.PeerID())
	exchange(t, a, b)
	wait(t, w.down, "the responder's disconnection")
}

// A responder that keeps connections does not close; the dialer does after
// Linger.
func TestDialerClosesAfterLinger(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := newHandler(t, ia, list, func(c *handler.Config) { c.Linger = 100 * time.Millisecond })
	b := newHandler(t, ib, list, handler.WithKeepConnection(true))
	w := watch(t, a, b.PeerID())
	id, err := a.Request(b.PeerID(), addr(b), []byte("q"))
	if err != nil {
		t.Fatal(err)
	}
	req := tu.Next[*handler.Request](t, b.Events())
	// The dialer's exchange ends after this (when the reply arrives), and
	// its linger starts then: the disconnection cannot come sooner than a
	// linger after it, however slowly this goroutine runs. (Measured from
	// the end of the exchange as this goroutine sees it, a loaded machine
	// made the linger look cut short.)
	answered := time.Now()
	if err := b.Response(req.From, req.Exchange, []byte("a")); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a, id), true, handler.ReasonOK)
	wait(t, w.down, "the dialer's disconnection")
	if d := time.Since(answered); d < 100*time.Millisecond {
		t.Fatalf("disconnected %s after the reply left, before the linger", d)
	}
}

// With KeepConnection on both sides, exchanges share one connection, which
// the idle timeout closes.
func TestIdleTimeout(t *testing.T) {
	// Between the two exchanges the connection is idle while the first
	// one's ack, Outcomes and this goroutine take turns before the second
	// request arrives: no event can close that gap, so the timeout must
	// outlast it. 300 ms did not on a loaded two-core machine with the
	// race detector (the connection closed, the second exchange dialed a
	// new one).
	const idle = 3 * time.Second
	a, b := pair(t, handler.WithKeepConnection(true), handler.WithIdleTimeout(idle))
	w := watch(t, a, b.PeerID())
	exchange(t, a, b)
	// The last activity is after this, so the idle close cannot come
	// sooner than the timeout after it, however slowly this goroutine runs.
	last := time.Now()
	exchange(t, b, a)
	wait(t, w.down, "the idle disconnection")
	if d := time.Since(last); d < idle {
		t.Fatalf("disconnected %s after the last exchange began, before the idle timeout", d)
	}
	select {
	case <-w.up:
	default:
		t.Fatal("no connection seen")
	}
	select {
	case <-w.up:
		t.Fatal("a second connection for the second exchange")
	default:
	}
}

// A connection on which nothing happens is closed by the idle timeout too.
// The node spares an inbound connection that has carried no stream yet for
// a dial timeout (its first stream may be on its way: p2p's
// TestDisconnectOpenedBeforeSparesConnectionAwaitingItsFirstStream), and
// at the default 10 s that took this test 10.5 of the 15 s it waits: a dial
// timeout of a nanosecond leaves the idle timeout alone to close it. The
// handler dials nothing here.
func TestIdleInboundConnection(t *testing.T) {
	h, raw := rawPair(t, handler.WithIdleTimeout(200*time.Millisecond),
		handler.WithNode(func(c *p2p.Config) { c.DialTimeout = time.Nanosecond }))
	w := watch(t, h, raw.id.ID)
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := raw.host.Connect(ctx, peer.AddrInfo{ID: h.PeerID(), Addrs: []ma.Multiaddr{addr(h)}}); err != nil {
		t.Fatal(err)
	}
	wait(t, w.down, "the idle disconnection")
}

// The responder requests the dialer right after replying: the follow-up
// exchange runs on the lingering or a fresh connection, and both complete.
func TestFollowUpExchange(t *testing.T) {
	a, b := pair(t)
	id, _ := a.Request(b.PeerID(), addr(b), []byte("q"))
	req := tu.Next[*handler.Request](t, b.Events())
	b.Response(req.From, req.Exchange, []byte("a"))
	back, err := b.Request(a.PeerID(), addr(a), []byte("q2"))
	if err != nil {
		t.Fatal(err)
	}
	req2 := tu.Next[*handler.Request](t, a.Events())
	a.Response(req2.From, req2.Exchange, []byte("a2"))
	expect(t, outcome(t, a, id), true, handler.ReasonOK)
	expect(t, outcome(t, b, back), true, handler.ReasonOK)
}

// Several exchanges with one peer at once, when configured.
func TestConcurrentExchangesSamePeer(t *testing.T) {
	a, b := pair(t, handler.WithMaxConcurrentPerPeer(3), handler.WithKeepConnection(true))
	var ids []handler.ExchangeID
	for i := range 5 {
		id, _ := a.Request(b.PeerID(), addr(b), []byte{byte(i)})
		ids = append(ids, id)
	}
	var reqs []*handler.Request
	for range 3 {
		reqs = append(reqs, tu.Next[*handler.Request](t, b.Events()))
	}
	tu.None[*handler.Request](t, b.Events(), 50*time.Millisecond)
	b.Response(reqs[0].From, reqs[0].Exchange, nil)
	reqs = append(reqs, tu.Next[*handler.Request](t, b.Events()))
	tu.None[*handler.Request](t, b.Events(), 50*time.Millisecond)
	for _, r := range reqs[1:] {
		b.Response(r.From, r.Exchange, nil)
	}
	last := tu.Next[*handler.Request](t, b.Events())
	b.Response(last.From, last.Exchange, nil)
	got := map[handler.ExchangeID]bool{}
	for range 5 {
		o := tu.NextMatch(t, a.Outcomes(), func(*handler.Outcome) bool { return true })
		if !o.OK {
			t.Fatalf("outcome %+v", o)
		}
		got[o.Exchange] = true
	}
	for _, id := range ids {
		if !got[id] {
			t.Fatalf("exchange %s missing", id)
		}
	}
}

// A dialer lingering after its exchange takes a request from the peer on
// that connection: the connection is in use again, and closed when that
// exchange completes, long before the linger would have.
func TestLingerEndsWhenPeerReusesConnection(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := newHandler(t, ia, list, func(c *handler.Config) { c.Linger = time.Minute })
	b := newHandler(t, ib, list, handler.WithKeepConnection(true))
	w := watch(t, a, ib.ID)
	exchange(t, a, b) // a lingers: b keeps connections and will not close
	back, _ := b.Request(ia.ID, nil, []byte("q2"))
	req := tu.Next[*handler.Request](t, a.Events())
	a.Response(req.From, req.Exchange, []byte("a2"))
	expect(t, outcome(t, b, back), true, handler.ReasonOK)
	wait(t, w.down, "the disconnection after the follow-up exchange")
	wait(t, w.up, "the connection")
	select {
	case <-w.up:
		t.Fatal("the follow-up exchange used a second connection")
	default:
	}
}
