package handler_test

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// relayNet is a relay r and a member d behind it holding a reservation,
// with the identities of two more members: b, which reaches d through r,
// and c, an ordinary peer whose idle connections are closed as usual.
type relayNet struct {
	ir, id, ib, ic tu.Identity
	list           *allowlist.List
	r, d           *handler.Handler
}

// newRelayNet starts r and d with the given options and waits for d's
// reservation.
func newRelayNet(t *testing.T, relayOpts, memberOpts []handler.Option) *relayNet {
	t.Helper()
	n := &relayNet{ir: tu.NewIdentity(t), id: tu.NewIdentity(t), ib: tu.NewIdentity(t), ic: tu.NewIdentity(t)}
	n.list = tu.Allowlist(t, n.ir, n.id, n.ib, n.ic)
	n.r = newHandler(t, n.ir, n.list, append(relayOpts, handler.WithNode(func(c *p2p.Config) { c.Relay.Enabled = true }))...)
	reserved := make(chan struct{}, 1)
	n.d = newHandler(t, n.id, n.list, append(memberOpts,
		handler.WithNode(func(c *p2p.Config) { c.Relays = []ma.Multiaddr{addr(n.r)} }),
		handler.WithObserver(func(ev p2p.Event) {
			if rr, ok := ev.(p2p.RelayReservations); ok && rr.Count == 1 {
				signal(reserved)
			}
		}))...)
	wait(t, reserved, "d's reservation on r")
	return n
}

// onlyConn is h's one connection to p.
func onlyConn(t *testing.T, h *handler.Handler, p peer.ID) network.Conn {
	t.Helper()
	cs := h.Node().Host().Network().ConnsToPeer(p)
	if len(cs) != 1 {
		t.Fatalf("%d connections to %s, want 1", len(cs), p)
	}
	return cs[0]
}

// idledOut connects a plain host with c's key to h after everything the
// test set up, and waits for h to close it for idleness. h armed the idle
// timers of its earlier connections before this one's, with the same
// timeout, and closes those it closes one at a time, in order: once this
// one is closed, they have had their turn.
func idledOut(t *testing.T, h *handler.Handler, ic tu.Identity) {
	t.Helper()
	w := watch(t, h, ic.ID)
	raw := tu.RawHost(t, ic.Key, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := raw.Connect(ctx, peer.AddrInfo{ID: h.PeerID(), Addrs: h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	// The peer opens no stream, so h spares its connection, as one whose
	// first stream may be on its way, until it is a dial old (DialTimeout,
	// 10 s): the close comes then, and the wait runs from there.
	select {
	case <-w.down:
	case <-time.After(p2p.DefaultDialTimeout + tu.Timeout):
		t.Fatalf("no idle disconnection of the ordinary peer within %s", p2p.DefaultDialTimeout+tu.Timeout)
	}
}

// A relay's idle timeout cut its members' reservations: the member was
// unreachable through the relay until it reserved again, seconds later,
// every idle timeout. Neither end closes a connection that relaying needs
// for idleness; an ordinary idle connection still closes.
func TestIdleTimeoutSparesRelaying(t *testing.T) {
	// The member counts its relay as relaying from the start (it asks
	// for a reservation there), but the relay only once the reservation
	// is made: it cannot tell a member about to reserve from an idle
	// peer. Its timeout must outlast the member's connect, identify and
	// reserve, which took over 200 ms in loaded -race runs: the relay then
	// closed first, and AutoRelay retried only relayRetry (15 s) later.
	short := handler.WithIdleTimeout(200 * time.Millisecond)
	relayShort := handler.WithIdleTimeout(time.Second)
	never := handler.WithIdleTimeout(-1)
	// Each subtest waits out a DialTimeout in idledOut: they run in
	// parallel.

	t.Run("relay keeps the reservation it granted", func(t *testing.T) {
		t.Parallel()
		n := newRelayNet(t, []handler.Option{relayShort}, []handler.Option{never})
		c := onlyConn(t, n.r, n.id.ID)
		idledOut(t, n.r, n.ic)
		if c.IsClosed() {
			t.Fatal("the relay closed the connection holding d's reservation for idleness")
		}
		if st := n.r.Node().RelayStatus(); st.Served != 1 {
			t.Fatalf("the relay serves %d reservations, want 1", st.Served)
		}
	})

	t.Run("member keeps its relay", func(t *testing.T) {
		t.Parallel()
		n := newRelayNet(t, []handler.Option{never}, []handler.Option{short})
		c := onlyConn(t, n.d, n.ir.ID)
		idledOut(t, n.d, n.ic)
		if c.IsClosed() {
			t.Fatal("d closed the connection holding its reservation for idleness")
		}
		if st := n.d.Node().RelayStatus(); st.Reservations != 1 {
			t.Fatalf("d holds %d reservations, want 1", st.Reservations)
		}
	})

	// Automatic disconnection after an exchange spares it too: the relay,
	// which had the last word, would close at once, and the member after
	// lingering.
	t.Run("an exchange between relay and member leaves the reservation", func(t *testing.T) {
		t.Parallel()
		n := newRelayNet(t, []handler.Option{relayShort}, []handler.Option{short})
		c := onlyConn(t, n.r, n.id.ID)
		id, err := n.r.Send(n.id.ID, nil, []byte("to my member"))
		if err != nil {
			t.Fatal(err)
		}
		expect(t, outcome(t, n.r, id), true, handler.ReasonOK)
		// The relay's close would have been sent with the outcome; d's
		// comes after Linger, before its idle timer for a peer connecting
		// after the relay's turn.
		idledOut(t, n.r, n.ic)
		idledOut(t, n.d, n.ic)
		if c.IsClosed() {
			t.Fatal("the exchange's end closed the connection holding d's reservation")
		}
		// And the connection still takes exchanges, both ways.
		back, err := n.d.Send(n.ir.ID, nil, []byte("to my relay"))
		if err != nil {
			t.Fatal(err)
		}
		expect(t, outcome(t, n.d, back), true, handler.ReasonOK)
		if c.IsClosed() || len(n.r.Node().Host().Network().ConnsToPeer(n.id.ID)) != 1 {
			t.Fatal("d's exchange did not run on the connection holding its reservation")
		}
	})

	t.Run("relay keeps a circuit, then closes the idle connection", func(t *testing.T) {
		t.Parallel()
		keep := handler.WithKeepConnection(true)
		n := newRelayNet(t, []handler.Option{relayShort}, []handler.Option{never, keep})
		b := newHandler(t, n.ib, n.list, never, keep, handler.WithNode(func(c *p2p.Config) {
			c.Relays = []ma.Multiaddr{addr(n.r)}
			c.Reachability = network.ReachabilityPublic
		}))
		// No address of d: b reaches it through r.
		id, err := b.Send(n.id.ID, nil, []byte("through the relay"))
		if err != nil {
			t.Fatal(err)
		}
		expect(t, outcome(t, b, id), true, handler.ReasonOK)
		circuit := onlyConn(t, b, n.id.ID)
		if !p2p.IsRelayed(circuit.RemoteMultiaddr()) {
			t.Fatalf("b reached d at %s, not through the relay", circuit.RemoteMultiaddr())
		}
		hop := onlyConn(t, n.r, n.ib.ID)
		if !n.r.Node().Relaying(n.ib.ID) || !b.Node().Relaying(n.ir.ID) {
			t.Fatal("the connection carrying the circuit is not relaying at both ends")
		}
		w := watch(t, n.r, n.ib.ID)
		idledOut(t, n.r, n.ic)
		if hop.IsClosed() || circuit.IsClosed() {
			t.Fatal("the relay closed the connection carrying a circuit for idleness")
		}
		// Once the circuit is gone, the connection is an idle one like any.
		if err := circuit.Close(); err != nil {
			t.Fatal(err)
		}
		wait(t, w.down, "the relay's idle disconnection of b once the circuit ended")
	})
}

// An exchange with the relay that ended before a circuit through it began
// marked the connection spent (automatic disconnection: one exchange per
// connection); once the circuit made it a relaying connection it was kept,
// but still spent, and the next exchange with the relay waited for a close
// that relaying prevented. A kept relaying connection is not spent.
func TestRelayingConnectionIsNotSpent(t *testing.T) {
	keep := handler.WithKeepConnection(true)
	never := handler.WithIdleTimeout(-1)
	n := newRelayNet(t, []handler.Option{never, keep}, []handler.Option{never, keep})
	// b: automatic disconnection, two exchanges with r at once, r reached
	// as a relay to d only.
	b := newHandler(t, n.ib, n.list, never, handler.WithMaxConcurrentPerPeer(2), handler.WithNode(func(c *p2p.Config) {
		c.Relays = []ma.Multiaddr{addr(n.r)}
		c.Reachability = network.ReachabilityPublic
	}))
	one, err := b.Request(n.ir.ID, addr(n.r), []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	two, err := b.Request(n.ir.ID, addr(n.r), []byte("two"))
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]*handler.Request{}
	for len(held) < 2 {
		r := nextRequest(t, n.r)
		held[string(r.Data)] = r
	}
	if err := n.r.Response(n.ib.ID, held["one"].Exchange, []byte("1")); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, b, one), true, handler.ReasonOK) // "two" still runs: spent, not closed
	// A request to d through r, which d holds: the circuit stays open.
	if _, err := b.Request(n.id.ID, nil, []byte("hold")); err != nil {
		t.Fatal(err)
	}
	nextRequest(t, n.d)
	if !b.Node().Relaying(n.ir.ID) {
		t.Fatal("b's connection to r carries no circuit")
	}
	if err := n.r.Response(n.ib.ID, held["two"].Exchange, []byte("2")); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, b, two), true, handler.ReasonOK)
	// The next exchange with r runs on the relaying connection.
	three, err := b.Send(n.ir.ID, addr(n.r), []byte("three"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, b, three), true, handler.ReasonOK)
}
