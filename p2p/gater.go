package p2p

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// gater enforces the allowlist and the rate limiter at every stage go-libp2p
// lets it: before dialing, at accept (only the source IP is known), and once
// Noise has proved the remote key (peer ID and IP binding together).
type gater struct {
	list    *allowlist.List
	limiter *ratelimit.Limiter
	// charge spends a token for misbehaviour and acts on exhaustion.
	charge func(p peer.ID, ip netip.Addr, r ratelimit.Reason)
	// refuse reports an inbound connection refused (refused.go).
	refuse func(Refused)
	// conns counts a peer's open connections. newHost sets it once the
	// host exists; before that nobody is connected.
	conns atomic.Pointer[func(peer.ID) int]
	// pending bounds inbound relayed handshakes (relay_admission.go); the
	// resource manager counts them, InterceptAccept tells it the source.
	pending *relayPending
	// wrong holds addresses that proved another key than the one dialed
	// (wrongaddr.go); they are not dialed for that peer for a while.
	wrong *addrMemory
	// wrongAddr is told of each such dial (Node.wrongAddr).
	wrongAddr wrongAddrFunc
	// denied holds the relays that refused a circuit to a peer lately
	// (relay_refused.go); they are not asked for it again for a while.
	denied *addrMemory
	// declines grants the cheaper charge of an inbound handshake declined
	// after our key, a few per source IP (handshake.go); now is the
	// handshake guard's clock.
	declines *allowance
	now      func() time.Time
}

var _ interface {
	InterceptPeerDial(peer.ID) bool
	InterceptAddrDial(peer.ID, ma.Multiaddr) bool
	InterceptAccept(network.ConnMultiaddrs) bool
	InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool
	InterceptUpgraded(network.Conn) (bool, control.DisconnectReason)
} = (*gater)(nil)

// InterceptPeerDial refuses to dial a peer that is not allowlisted or is
// being rate limited.
func (g *gater) InterceptPeerDial(p peer.ID) bool {
	return g.list.Contains(p) && !g.limiter.PeerBanned(string(p))
}

// InterceptAddrDial refuses to dial an address the peer's IP binding does not
// allow: the key would be rejected there anyway. Nor is an address dialed
// for p that proved to hold another key lately (wrongaddr.go): the dial
// would fail again, at the cost of a handshake to a bystander. Nor is a
// relay asked for a circuit to p that it refused lately (relay_refused.go):
// it would charge this node for asking again.
func (g *gater) InterceptAddrDial(p peer.ID, a ma.Multiaddr) bool {
	if r, relayed := relayOf(a); relayed {
		return g.relayAllowed(p, r) && (g.denied == nil || !g.denied.holds(p, circuitVia(r)))
	}
	ip, ok := ipOf(a)
	if !ok {
		return false
	}
	return g.list.Allowed(p, ip) && !g.limiter.IPBanned(ip) && (g.wrong == nil || !g.wrong.holds(p, a))
}

// InterceptAccept refuses a connection from an IP that no entry admits or
// that is being rate limited, before any handshake work is spent on it.
func (g *gater) InterceptAccept(c network.ConnMultiaddrs) bool {
	if r, relayed := relayOf(c.RemoteMultiaddr()); relayed {
		return g.acceptRelayed(c, r)
	}
	ip, ok := ipOf(c.RemoteMultiaddr())
	if !ok {
		return false
	}
	switch {
	case g.limiter.IPBanned(ip):
		g.refuse(Refused{IP: ip, Reason: RefusedIPBanned})
		return false
	case !g.list.IPAllowed(ip):
		g.refuse(Refused{IP: ip, Reason: RefusedIPNotAllowlisted})
		return false
	}
	return true
}

// acceptRelayed is InterceptAccept for a circuit connection through relay
// r. Only the relay is proven yet (it opened the circuit on its own
// connection), and it must be a member, not cut off: the node holds
// reservations only on its own static relays, but any member could open a
// circuit to it. The IP is the relay's, so there is nothing to check or
// charge by IP, and nothing is charged to the relay (section 7 of
// docs/security.md). The source the relay announces is not proven until
// Noise (securedRelayed checks it and says why it refuses); here it is
// only noted, for the bound on pending relayed handshakes
// (relay_admission.go).
func (g *gater) acceptRelayed(c network.ConnMultiaddrs, r peer.ID) bool {
	if !g.list.Contains(r) || g.limiter.PeerBanned(string(r)) {
		return false
	}
	src, ok := announcedSource(c)
	if !ok {
		// Not go-libp2p's circuit connection: there is no source to
		// hold Noise's key to, so securedRelayed would refuse it.
		return false
	}
	g.pending.noted(r, src)
	return true
}

// InterceptSecured checks the Noise-proved peer ID against the allowlist and
// its IP binding. An inbound stranger or a key from the wrong IP costs tokens
// from both the IP and the claimed ID.
func (g *gater) InterceptSecured(dir network.Direction, p peer.ID, c network.ConnMultiaddrs) bool {
	if r, relayed := relayOf(c.RemoteMultiaddr()); relayed {
		return g.securedRelayed(dir, p, r, c)
	}
	ip, ok := ipOf(c.RemoteMultiaddr())
	if !ok {
		return false
	}
	// Only inbound refusals are charged and reported: an outbound one is
	// this node's own decision, which its dial reports to the caller.
	inbound := dir == network.DirInbound
	refuse := func(r RefusalReason) bool {
		if inbound {
			g.refuse(Refused{Peer: p, IP: ip, Reason: r})
		}
		return false
	}
	e, listed := g.list.Get(p)
	switch {
	case !listed:
		if inbound {
			g.charge(p, ip, ratelimit.UnknownPeer)
		}
		return refuse(RefusedUnknownPeer)
	case !e.AllowsIP(ip):
		if inbound {
			g.charge(p, ip, ratelimit.PeerIPMismatch)
		}
		return refuse(RefusedIPMismatch)
	case g.limiter.PeerBanned(string(p)):
		return refuse(RefusedPeerBanned)
	case g.limiter.IPBanned(ip):
		return refuse(RefusedIPBanned)
	}
	if inbound && g.connsTo(p) >= limitPeerConns {
		// An honest peer holds one connection, two while a redial
		// overlaps the old one; each extra one costs a handshake, so a
		// key opening more is flooding (see docs/security.md). The key
		// is proven by now, so it alone pays: the IP may be shared.
		g.charge(p, netip.Addr{}, ratelimit.ProtocolViolation)
		return refuse(RefusedTooManyConnections)
	}
	return true
}

// relayAllowed decides a dial to p through relay r: both must be members,
// neither cut off, and p's entry must admit relayed connections (an IP
// binding cannot be checked through a relay).
func (g *gater) relayAllowed(p, r peer.ID) bool {
	e, ok := g.list.Get(p)
	return ok && e.AllowsRelayed() && g.list.Contains(r) &&
		!g.limiter.PeerBanned(string(p)) && !g.limiter.PeerBanned(string(r))
}

// securedRelayed is InterceptSecured for a connection through relay r. The
// IP seen is the relay's, so refusals are charged to the proved key alone
// and reported without an IP: charging the relay's IP would let any peer
// behind it cut the relay off.
//
// An inbound connection's key must be the source the relay announced. An
// honest relay announces the key that asked it for the circuit (proven on
// that peer's connection to it), so a different key means the circuit's
// far end ran Noise with a key other than its own: a member minting
// throwaway keys to make the node run handshakes through a relay, or a
// hostile relay splicing someone else's handshake into a circuit it made
// up. Neither is charged to anyone: not the relay (a member can do this
// through an honest relay), not the announced source (a hostile relay can
// name any member), not the proved key (a hostile relay can forward an
// honest member's handshake under another source's name). The refusal is
// reported with the proved key; relay_admission.go bounds how many such
// handshakes can be in progress at once.
func (g *gater) securedRelayed(dir network.Direction, p, r peer.ID, c network.ConnMultiaddrs) bool {
	inbound := dir == network.DirInbound
	if inbound {
		if src, ok := announcedSource(c); !ok || src != p {
			g.refuse(Refused{Peer: p, Reason: RefusedRelaySourceMismatch})
			return false
		}
	}
	refuse := func(reason RefusalReason, charge ratelimit.Reason) bool {
		if inbound {
			if charge != 0 {
				g.charge(p, netip.Addr{}, charge)
			}
			g.refuse(Refused{Peer: p, Reason: reason})
		}
		return false
	}
	e, listed := g.list.Get(p)
	switch {
	case !listed:
		return refuse(RefusedUnknownPeer, ratelimit.UnknownPeer)
	case !e.AllowsRelayed():
		return refuse(RefusedRelayNotAllowed, ratelimit.PeerIPMismatch)
	case !g.list.Contains(r):
		return refuse(RefusedRelayNotAllowed, 0)
	case g.limiter.PeerBanned(string(p)):
		return refuse(RefusedPeerBanned, 0)
	}
	if inbound && g.connsTo(p) >= limitPeerConns {
		g.charge(p, netip.Addr{}, ratelimit.ProtocolViolation)
		return refuse(RefusedTooManyConnections, 0)
	}
	return true
}

// connsTo is how many connections p has open now.
func (g *gater) connsTo(p peer.ID) int {
	if f := g.conns.Load(); f != nil {
		return (*f)(p)
	}
	return 0
}

// InterceptUpgraded accepts: everything was decided in InterceptSecured.
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

// ipOf extracts the IP of a /ip4 or /ip6 multiaddr.
func ipOf(a ma.Multiaddr) (netip.Addr, bool) {
	if a == nil {
		return netip.Addr{}, false
	}
	nip, err := manet.ToIP(a)
	if err != nil {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(nip)
	return ip.Unmap(), ok
}
