package p2p

import (
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"
)

// connTracker turns libp2p's per-connection notifications into one
// Connected when a peer's first connection opens and one Disconnected when
// its last closes. Both are essential events, never dropped: a consumer that
// missed one would hold the wrong connection state for good. Their number is
// bounded by how often allowlisted peers can connect, which the gater's
// per-key cap and the resource manager bound.
//
// Only connections whose Connected it saw are counted: one made before the
// tracker was registered (New listens first) is never reported, and
// neither is its end. go-libp2p notifies a connection's Disconnected after
// its Connected.
type connTracker struct {
	n     *Node
	mu    sync.Mutex
	count map[peer.ID]int
	seen  map[network.Conn]struct{}
	state map[network.Conn]*connState // for open connections
	// closed holds the states of the last connections that closed, by
	// connection ID (keeping the connections would keep their memory),
	// next being where the next one goes.
	closed [closedKept]closedState
	next   int
}

// closedKept is how many closed connections' states the tracker keeps.
// A sender can open a stream on a connection just before it closes and
// ask for its state (of) once its Disconnected has come; a new state
// would then have forgotten that the peer accepted the connection, or
// that this node closed it, and the connection lost would read as the
// peer's refusal at the handshake (refusedAtHandshake). A window that
// short needs few.
const closedKept = 64

type closedState struct {
	id string
	cs *connState
}

// connState is what the node learns of one of its connections that tells
// a refusal at the handshake from a connection lost (refusedAtHandshake).
// Streams keep it; it leaves the tracker with the connection.
type connState struct {
	// accepted: the peer accepted the connection: it opened a message
	// stream on it, or answered the proposal of one of ours.
	accepted atomic.Bool
	// closedHere: this node closed it (closeConnAsync, closeConns).
	closedHere atomic.Bool

	// The peer closing it, as far as this node can tell (peer_closing.go).
	peerEnded   atomic.Bool  // the peer ended a message stream on it gracefully
	peerClosing atomic.Bool  // closingTill is set: the clock is read only then
	closingTill atomic.Int64 // Unix nanoseconds: until then no stream on it is picked or opened
	// gone is closed with its Disconnected; made, under the tracker's
	// lock, only for a sender to wait on (goneCh), so that a connection
	// costs nothing more for it.
	gone chan struct{}
}

// of returns the state of c. A connection already closed whose state has
// left the tracker (with its Disconnected) gets the state it had if it is
// among the last closedKept to close, and otherwise a new one, which the
// tracker does not keep.
func (t *connTracker) of(c network.Conn) *connState {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cs := t.state[c]; cs != nil {
		return cs
	}
	if c.IsClosed() {
		id := c.ID()
		for _, k := range t.closed {
			if k.cs != nil && k.id == id {
				return k.cs
			}
		}
		return new(connState)
	}
	cs := new(connState)
	if t.state == nil {
		t.state = make(map[network.Conn]*connState)
	}
	t.state[c] = cs
	return cs
}

// goneCh returns a channel closed once c, whose state is cs, has closed.
func (t *connTracker) goneCh(c network.Conn, cs *connState) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cs.gone == nil {
		cs.gone = make(chan struct{})
		if t.state[c] != cs {
			// Its Disconnected has come, or the tracker never held it
			// (of, for a connection closed already).
			close(cs.gone)
		}
	}
	return cs.gone
}

func (t *connTracker) Connected(_ network.Network, c network.Conn) {
	p := c.RemotePeer()
	// The gater admitted c before its muxer was negotiated; an allowlist
	// change in between (a membership version applied, a reload) was
	// enforced on Network().Conns(), which did not hold c yet. c is in
	// them now, so a change from here on closes it: check once more.
	if !t.n.admits(c) {
		t.n.log.Info("peer no longer allowlisted: disconnecting", zap.Stringer("peer", p))
		t.n.closeConnAsync(c)
		return
	}
	t.mu.Lock()
	if t.count == nil {
		t.count = make(map[peer.ID]int)
		t.seen = make(map[network.Conn]struct{})
	}
	t.seen[c] = struct{}{}
	t.count[p]++
	first := t.count[p] == 1
	// Pushed under the lock so that Connected and Disconnected of one peer
	// cannot overtake each other.
	if first {
		t.n.metrics.peerCount(1)
		t.n.events.Push(Connected{Peer: p, Addr: c.RemoteMultiaddr(), Inbound: c.Stat().Direction == network.DirInbound,
			Relayed: isRelayed(c.RemoteMultiaddr())}, true)
	}
	t.mu.Unlock()
}

func (t *connTracker) Disconnected(_ network.Network, c network.Conn) {
	p := c.RemotePeer()
	t.mu.Lock()
	if cs := t.state[c]; cs != nil {
		t.closed[t.next] = closedState{id: c.ID(), cs: cs}
		t.next = (t.next + 1) % closedKept
		delete(t.state, c)
		if cs.gone != nil {
			close(cs.gone)
		}
	}
	if _, ok := t.seen[c]; !ok {
		t.mu.Unlock()
		return
	}
	delete(t.seen, c)
	t.count[p]--
	last := t.count[p] <= 0
	if last {
		delete(t.count, p)
		t.n.metrics.peerCount(-1)
		t.n.events.Push(Disconnected{Peer: p}, true)
	}
	t.mu.Unlock()
}

func (t *connTracker) Listen(network.Network, ma.Multiaddr)      {}
func (t *connTracker) ListenClose(network.Network, ma.Multiaddr) {}
