package handler_test

import (
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// fast are the timings every test starts from: short enough that error
// paths end quickly, long enough for the race detector on two cores.
func fast(c *handler.Config) {
	c.BackoffBase = 10 * time.Millisecond
	c.BackoffMax = 50 * time.Millisecond
	c.CloseTimeout = 500 * time.Millisecond
}

// newHandler starts a handler for id on loopback, closed when the test ends.
func newHandler(t testing.TB, id tu.Identity, list *allowlist.List, opts ...handler.Option) *handler.Handler {
	t.Helper()
	h, err := handler.New(nil, id.Key, list, append([]handler.Option{fast}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// pair starts two handlers that allowlist each other.
func pair(t testing.TB, opts ...handler.Option) (a, b *handler.Handler) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	return newHandler(t, ia, list, opts...), newHandler(t, ib, list, opts...)
}
func addr(h *handler.Handler) ma.Multiaddr { return h.Addrs()[0] }

// outcome waits for the Outcome of exchange id.
func outcome(t testing.TB, h *handler.Handler, id handler.ExchangeID) *handler.Outcome {
	t.Helper()
	return tu.NextMatch(t, h.Outcomes(), func(o *handler.Outcome) bool { return o.Exchange == id })
}

// expect checks an outcome's verdict.
func expect(t testing.TB, o *handler.Outcome, ok bool, r handler.Reason) {
	t.Helper()
	if o.OK != ok || o.Reason != r {
		t.Fatalf("outcome %+v, want ok=%v reason=%s", o, ok, r)
	}
}

// echo answers every request h receives with its own data until h closes.
// It returns a function that waits for it to stop.
func echo(t testing.TB, h *handler.Handler) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ev := range h.Events() {
			if r, ok := ev.(*handler.Request); ok {
				h.Response(r.From, r.Exchange, r.Data)
			}
		}
	}()
	t.Cleanup(func() {
		h.Close()
		wg.Wait()
	})
}

// connWatch reports a host's connection events to one peer.
type connWatch struct {
	peer peer.ID
	up   chan struct{}
	down chan struct{}
}

// watch observes h's connections to p from the host itself: the handler
// consumes the node's connection events, and these tests are about them.
func watch(t testing.TB, h *handler.Handler, p peer.ID) *connWatch {
	w := &connWatch{peer: p, up: make(chan struct{}, 64), down: make(chan struct{}, 64)}
	nb := &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			if c.RemotePeer() == p {
				signal(w.up)
			}
		},
		DisconnectedF: func(n network.Network, c network.Conn) {
			if c.RemotePeer() == p && n.Connectedness(p) != network.Connected {
				signal(w.down)
			}
		},
	}
	netw := h.Node().Host().Network()
	netw.Notify(nb)
	t.Cleanup(func() { netw.StopNotify(nb) })
	return w
}

func wait(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(tu.Timeout):
		t.Fatalf("no %s within %s", what, tu.Timeout)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func allowEntry(id tu.Identity) allowlist.Entry { return allowlist.Entry{ID: id.ID} }

// identified returns a wait for h's node to have identified p. A peer that
// dialed h is known at an address h can dial back only from identify, and
// its first message leaves before identify is done (p2p/stream_open.go):
// a test that needs h to redial p after p's connection is gone waits for it
// first. Call identified before p connects.
func identified(t testing.TB, h *handler.Handler, p peer.ID) (wait func()) {
	t.Helper()
	sub, err := h.Node().Host().EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	return func() {
		t.Helper()
		deadline := time.NewTimer(tu.Timeout)
		defer deadline.Stop()
		for {
			select {
			case ev := <-sub.Out():
				if ev.(event.EvtPeerIdentificationCompleted).Peer == p {
					return
				}
			case <-deadline.C:
				t.Fatalf("%s was not identified within %s", p, tu.Timeout)
			}
		}
	}
}
