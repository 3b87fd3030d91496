package p2p

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
)

// Connections that relaying needs.
//
// A reservation lives as long as one connection between the relay and the
// member: go-libp2p's relay service forgets it when the member's last
// connection closes, and AutoRelay on the member drops the relay then (and
// reserves again seconds later). A circuit lives on the connections that
// carry it. A caller closing connections for idleness (the handler) must
// not close those: a relay cut its members' reservations every idle
// timeout, leaving them unreachable for seconds each time. Node.Relaying
// tells it which peers they are.
//
// go-libp2p announces reservations to the connection manager only, as a
// tag on the relay (its grant) and a protection on the member (AutoRelay's
// hold), so the node's connection manager records those two. It trims
// nothing, as before: every connection is allowlisted.

// The marks go-libp2p v0.51 puts on a reservation's peer: the relay
// service's tag (circuitv2/relay, handleReserve) and AutoRelay's protection
// (autorelay, relay_finder.go's autorelayTag).
const (
	reservationTag = "relay-reservation"
	autorelayTag   = "autorelay"
)

// relayConnMgr is a connection manager that trims nothing and remembers
// the peers with a reservation either way.
type relayConnMgr struct {
	connmgr.NullConnMgr

	mu sync.Mutex
	// granted are the members holding a reservation on this relay;
	// held the relays this node holds one on.
	granted map[peer.ID]bool
	held    map[peer.ID]bool
}

func newRelayConnMgr() *relayConnMgr {
	return &relayConnMgr{granted: make(map[peer.ID]bool), held: make(map[peer.ID]bool)}
}

// TagPeer notes a reservation the relay service granted p.
func (m *relayConnMgr) TagPeer(p peer.ID, tag string, _ int) {
	if tag == reservationTag {
		m.set(m.granted, p, true)
	}
}

// UntagPeer notes the end of p's reservation (it expired unrenewed).
func (m *relayConnMgr) UntagPeer(p peer.ID, tag string) {
	if tag == reservationTag {
		m.set(m.granted, p, false)
	}
}

// Protect notes a reservation AutoRelay took on the relay p.
func (m *relayConnMgr) Protect(p peer.ID, tag string) {
	if tag == autorelayTag {
		m.set(m.held, p, true)
	}
}

// Unprotect notes that AutoRelay gave up its reservation on p. It reports
// whether p is still protected, as connmgr.ConnManager asks.
func (m *relayConnMgr) Unprotect(p peer.ID, tag string) bool {
	if tag == autorelayTag {
		m.set(m.held, p, false)
	}
	return false
}

// IsProtected reports whether p holds a reservation either way (AutoRelay's
// protection, or the relay service's grant), for the autorelay tag or any
// tag (""): nothing in go-libp2p asks it today.
func (m *relayConnMgr) IsProtected(p peer.ID, tag string) bool {
	if tag != autorelayTag && tag != "" {
		return false
	}
	return m.reserved(p)
}

// Notifee forgets p's reservations when its last connection closes, as
// go-libp2p does on both sides (which does not untag or unprotect then).
func (m *relayConnMgr) Notifee() network.Notifiee {
	return &network.NotifyBundle{DisconnectedF: func(n network.Network, c network.Conn) {
		p := c.RemotePeer()
		if n.Connectedness(p) == network.Connected {
			return
		}
		m.mu.Lock()
		delete(m.granted, p)
		delete(m.held, p)
		m.mu.Unlock()
	}}
}

func (m *relayConnMgr) set(s map[peer.ID]bool, p peer.ID, on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if on {
		s[p] = true
	} else {
		delete(s, p)
	}
}

// reserved reports whether p holds a reservation on this node or this
// node on p.
func (m *relayConnMgr) reserved(p peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.granted[p] || m.held[p]
}

// Relaying reports whether closing the connections to p would cut relaying:
// p holds a reservation on this node's relay service, this node holds one
// on p or asks it for one (p is one of its static relays, and AutoRelay
// runs), or a connection to p carries a circuit (this node relays it, or
// it is this node's own relayed connection to someone else). The handler
// keeps such connections however idle; an explicit DisconnectFrom still
// closes them.
//
// A static relay counts before AutoRelay holds its reservation: AutoRelay
// connects, waits for identify, and only then reserves, and a connection
// closed for idleness in between fails the reservation, which AutoRelay
// tries again only after relayRetry, on a new connection that meets the
// same idle timer: with an idle timeout shorter than that exchange (a slow
// link, a loaded host) the member was never reachable through the relay.
func (n *Node) Relaying(p peer.ID) bool {
	if !n.started.Load() {
		return false
	}
	if n.relay.marks != nil && n.relay.marks.reserved(p) {
		return true
	}
	if n.relay.reserving {
		for _, r := range n.relay.relays {
			if r.ID == p {
				return true
			}
		}
	}
	for _, c := range n.host.Network().ConnsToPeer(p) {
		for _, s := range c.GetStreams() {
			// A circuit is a hop stream (source to relay) joined to a stop
			// stream (relay to destination), open as long as the circuit.
			if pr := s.Protocol(); pr == proto.ProtoIDv2Hop || pr == proto.ProtoIDv2Stop {
				return true
			}
		}
	}
	return false
}
