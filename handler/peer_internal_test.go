package handler

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// The paths by which a peer leaves connClosing without its Disconnected
// event depend on the node's event timing, which no end-to-end test can
// arrange. These tests drive the loop's methods directly, from the test
// goroutine, on a handler whose loop never started.

func idle(t *testing.T, node ...func(*p2p.Config)) (*Handler, tu.Identity) {
	t.Helper()
	me, other := tu.NewIdentity(t), tu.NewIdentity(t)
	nc := p2p.Config{Key: me.Key, Allowlist: tu.Allowlist(t, me, other)}
	for _, f := range node {
		f(&nc)
	}
	h, err := build(Config{Node: nc, Linger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.teardown)
	return h, other
}

// fire runs the timers until pred holds.
func fire(t *testing.T, h *Handler, pred func() bool) {
	t.Helper()
	deadline := time.After(tu.Timeout)
	for !pred() {
		select {
		case <-h.timers.C():
			h.timers.expire()
		case <-deadline:
			t.Fatal("condition not reached")
		}
	}
}

// Closing, and the close check finds no connection: the Disconnected event
// was lost. The peer is disconnected and its queue may dial.
func TestClosingCheckFindsNoConnection(t *testing.T) {
	h, other := idle(t)
	ps := h.peer(other.ID)
	ps.conn = connUp
	h.disconnect(ps, time.Time{})
	if ps.conn != connClosing {
		t.Fatalf("state %s", ps.conn)
	}
	fire(t, h, func() bool { return h.peers[other.ID] == nil })
}

// Closing, and the close check finds a connection: one opened since, whose
// Connected event the node folded into the old connection's. The peer is
// connected again.
func TestClosingCheckFindsNewConnection(t *testing.T) {
	h, other := idle(t)
	raw := tu.RawHost(t, other.Key, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := raw.Connect(ctx, peer.AddrInfo{ID: h.node.ID(), Addrs: h.node.Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	ps := h.peer(other.ID)
	ps.conn = connClosing // as if the DisconnectFrom had gone before raw connected
	h.setPeerTimer(ps, nil)
	h.disconnectCheckIn(ps)
	fire(t, h, func() bool { return ps.conn == connUp })
	if h.node.Host().Network().Connectedness(other.ID) != network.Connected {
		t.Fatal("the new connection was closed")
	}
}

// An exchange that the peer started while we were closing ends: in
// automatic mode the peer is closed again.
func TestClosingPeerClosedAgainAfterExchange(t *testing.T) {
	h, other := idle(t)
	ps := h.peer(other.ID)
	ps.conn = connClosing
	h.activity(ps)
	ex := &exchange{id: 1, p: ps, role: Responder, kind: KindRequest, state: StateAwaitAck, start: time.Now()}
	ps.inbound[1] = ex
	h.active++
	h.end(ex, ReasonOK, nil)
	if ps.conn != connClosing || ps.reused || ps.timer == nil {
		t.Fatalf("state %s, reused %v, timer %v", ps.conn, ps.reused, ps.timer)
	}
	if o := (<-h.outcomes.C()).(*Outcome); !o.OK {
		t.Fatalf("outcome %+v", o)
	}
}

// The linger's close spares a connection the peer opened after the linger
// began: the peer saw its old connection go and dialed again for new work,
// which our handler cannot see until our node answers the peer's first
// stream. Closing it would fail the peer's dial as a refusal at the
// handshake (p2p.ErrClosedAtHandshake) and cost it an attempt.
func TestLingerCloseSparesNewerConnection(t *testing.T) {
	// The old connection carries no stream here, where it carried the
	// exchange: a dial timeout of a nanosecond keeps the node from sparing
	// it as one awaiting its first stream (p2p's
	// TestDisconnectOpenedBeforeSparesConnectionAwaitingItsFirstStream).
	h, other := idle(t, func(c *p2p.Config) { c.DialTimeout = time.Nanosecond })
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	connect := func() host.Host {
		t.Helper()
		raw := tu.RawHost(t, other.Key, "127.0.0.1")
		if err := raw.Connect(ctx, peer.AddrInfo{ID: h.node.ID(), Addrs: h.node.Host().Addrs()}); err != nil {
			t.Fatal(err)
		}
		return raw
	}
	gone := make(chan struct{})
	connect().Network().Notify(&network.NotifyBundle{DisconnectedF: func(network.Network, network.Conn) { close(gone) }})
	ps := h.peer(other.ID)
	ps.conn = connUp
	h.linger(ps) // the exchange on the old connection ended with the peer's reply
	newer := connect()
	fire(t, h, func() bool { return ps.conn == connClosing })
	select {
	case <-gone:
	case <-time.After(tu.Timeout):
		t.Fatal("the lingering connection stayed open")
	}
	// The node closes a DisconnectFrom's connections one after the other
	// in its loop: by the time the peer sees the old one go, the newer one
	// would be closed too, on the node's side first.
	if n := len(h.node.Host().Network().ConnsToPeer(other.ID)); n != 1 {
		t.Fatalf("%d connections to the peer, want the newer one", n)
	}
	if newer.Network().Connectedness(h.node.ID()) != network.Connected {
		t.Fatal("the newer connection was closed")
	}
	// Its Connected event folded into the old connection's: the close
	// check finds it, and the peer is connected again.
	fire(t, h, func() bool { return ps.conn == connUp })
}
