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
	acc   map[network.Conn]*atomic.Bool // accepted, for open connections
}

// accepted returns the flag that says whether the peer has accepted c: it
// opened a stream on it, or answered one of ours. A connection this node
// dialed that closes before that was refused at the handshake (its
// gater), which readFailed reports as such. Streams keep the flag; it
// leaves the tracker with the connection.
func (t *connTracker) accepted(c network.Conn) *atomic.Bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.IsClosed() {
		return new(atomic.Bool) // its Disconnected may have come already
	}
	if t.acc == nil {
		t.acc = make(map[network.Conn]*atomic.Bool)
	}
	a := t.acc[c]
	if a == nil {
		a = new(atomic.Bool)
		t.acc[c] = a
	}
	return a
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
	delete(t.acc, c)
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
