package p2p_test

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// staleDials hands back, in place of what a dial got, the connection a
// test closed earlier, as many times as it is armed for: what go-libp2p's
// dial worker does for a dial that joins another one whose connection has
// closed since (dial.go).
type staleDials struct {
	old   atomic.Pointer[network.Conn]
	armed atomic.Int32
}

func (s *staleDials) hook(c network.Conn) network.Conn {
	if s.armed.Add(-1) >= 0 {
		return *s.old.Load()
	}
	return c
}

// withStaleDials starts a and b, connects b to a and disconnects them,
// then has b's next armed dials handed the closed connection.
func withStaleDials(t *testing.T, armed int32) (a, b *p2p.Node, stale *staleDials) {
	t.Helper()
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	stale = new(staleDials)
	a = tu.Node(t, ia, list)
	b = tu.Node(t, ib, list, p2p.WithDialHook(stale.hook))
	old := closedConn(t, b, a)
	stale.old.Store(&old)
	stale.armed.Store(armed)
	return a, b, stale
}

// closedConn connects b to a, then disconnects them, and returns the
// connection b had.
func closedConn(t *testing.T, b, a *p2p.Node) network.Conn {
	t.Helper()
	b.Sender() <- p2p.Dial{Peer: a.ID(), Addr: a.Addrs()[0]}
	tu.Next[p2p.Connected](t, b.Receiver())
	conns := b.Host().Network().ConnsToPeer(a.ID())
	if len(conns) != 1 {
		t.Fatalf("%d connections to the peer, want 1", len(conns))
	}
	b.Sender() <- p2p.DisconnectFrom{Peer: a.ID()}
	tu.Next[p2p.Disconnected](t, b.Receiver())
	if !conns[0].IsClosed() {
		t.Fatal("the connection is still open after Disconnected")
	}
	return conns[0]
}

// A dial handed a connection that this node closed before the dial began
// took it for its own, and the message failed dial_failed, at first as
// the peer's refusal at the handshake (the connection's state, saying
// that we closed it, had gone with its Disconnected; the tracker keeps it
// now). The message must go on a new connection instead.
func TestDialHandedClosedConnDialsAgain(t *testing.T) {
	a, b, stale := withStaleDials(t, 1)

	b.Sender() <- p2p.SendMsg{Peer: a.ID(), Addr: a.Addrs()[0], ID: 1, Data: []byte("m")}
	st := tu.Next[p2p.Status](t, b.Receiver())
	if !st.OK {
		t.Fatalf("Status %s (%v), want ok", st.Reason, st.Err)
	}
	if d := tu.Next[p2p.Data](t, a.Receiver()); string(d.Bytes) != "m" {
		t.Fatalf("the peer got %q, want %q", d.Bytes, "m")
	}
	if n := stale.armed.Load(); n >= 0 {
		t.Fatalf("the stale connection was never handed out (armed %d)", n)
	}
}

// A dial handed such a connection every time gives up, and says so
// without blaming the peer.
func TestDialHandedClosedConnGivesUp(t *testing.T) {
	a, b, _ := withStaleDials(t, 1<<20)

	b.Sender() <- p2p.SendMsg{Peer: a.ID(), Addr: a.Addrs()[0], ID: 1, Data: []byte("m")}
	st := tu.Next[p2p.Status](t, b.Receiver())
	switch {
	case st.OK || st.Reason != p2p.ReasonDialFailed:
		t.Fatalf("Status %s (%v), want %s", st.Reason, st.Err, p2p.ReasonDialFailed)
	case errors.Is(st.Err, p2p.ErrClosedAtHandshake):
		t.Fatalf("the error blames the peer: %v", st.Err)
	case !errors.Is(st.Err, p2p.ErrStaleConn):
		t.Fatalf("error %v, want %v", st.Err, p2p.ErrStaleConn)
	}
}

// The node's dials of a peer take turns: a second Dial while the first
// is still returning would join it in go-libp2p's dial worker, which can
// hand it that dial's connection closed. The first is held in its hook;
// the second must not reach the swarm until it is let go.
func TestDialsOfAPeerTakeTurns(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	var calls atomic.Int32
	firstIn, release, secondIn := make(chan struct{}), make(chan struct{}), make(chan struct{})
	hook := func(c network.Conn) network.Conn {
		switch calls.Add(1) {
		case 1:
			close(firstIn)
			waitFor(release)
		case 2:
			close(secondIn)
		}
		return c
	}
	a := tu.Node(t, ia, list)
	b := tu.Node(t, ib, list, p2p.WithDialHook(hook))
	letGo := closeOnce(release)
	defer letGo() // before the nodes' Close, which waits for the dial
	b.Sender() <- p2p.Dial{Peer: a.ID(), Addr: a.Addrs()[0]}
	if !within(firstIn) {
		t.Fatal("the first dial never got a connection")
	}
	b.Sender() <- p2p.Dial{Peer: a.ID(), Addr: a.Addrs()[0]}
	// Proving an absence: the one place a test waits a fixed time. Without
	// the turns the second dial gets the first's connection within
	// microseconds.
	select {
	case <-secondIn:
		t.Fatal("a second dial of the peer ran while the first had not returned")
	case <-time.After(200 * time.Millisecond):
	}
	letGo()
	select {
	case <-secondIn:
	case <-time.After(tu.Timeout):
		t.Fatal("the second dial never ran")
	}
}

// A dial that waited its turn behind one that failed is a dial of its own:
// go-libp2p's backoff, which the failure behind it set, does not refuse
// it. The node clears that backoff before every dial (clearBackoff); it
// must clear it once its turn has come, not before it waits.
func TestDialAfterItsTurnIgnoresBackoff(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	b := tu.Node(t, ib, list)
	down := tu.LoopbackAddr(t) // nobody listens there
	const dials = 4
	for range dials {
		b.Sender() <- p2p.Dial{Peer: ia.ID, Addr: down}
	}
	for range dials {
		ev := tu.Next[p2p.Error](t, b.Receiver())
		if strings.Contains(ev.Err.Error(), "backoff") {
			t.Fatalf("a dial after its turn was refused by the backoff of the one before: %v", ev.Err)
		}
	}
}
