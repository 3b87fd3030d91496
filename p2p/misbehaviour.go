package p2p

import (
	"net/netip"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// The node's answer to misbehaviour: spend tokens, cut off whoever runs out,
// and drop whoever the allowlist no longer admits. The signals themselves
// are raised where they are seen: the gater, the handshake guard, the
// receive and send paths.

// Charge spends one misbehaviour token from p for r, as the node's own
// checks do: it is counted in the misbehaviour metric, and the spend that
// exhausts p's budget disconnects p, emits a ConnectionLimit event and makes
// the gater refuse p until the ban ends. Layers built on the node's host
// (the membership protocol) report what a proven peer did through it.
func (n *Node) Charge(p peer.ID, r ratelimit.Reason) {
	if p != "" {
		n.charge(p, netip.Addr{}, r)
	}
}

// charge spends a misbehaviour token from the peer and from the IP (either
// may be unknown). An exhausted budget disconnects the offender and tells the
// caller.
func (n *Node) charge(p peer.ID, ip netip.Addr, r ratelimit.Reason) {
	n.log.Debug("misbehaviour", zap.Stringer("peer", p), zap.Stringer("ip", ip), zap.Stringer("reason", r))
	n.metrics.spent(r)
	// What a proven key does is charged to that key alone: charging its IP
	// too would cut off honest peers behind the same NAT. Only offences
	// before or at the handshake, when the IP is all we can trust, cost it.
	switch r {
	case ratelimit.FailedHandshake, ratelimit.DeclinedHandshake, ratelimit.UnknownPeer, ratelimit.PeerIPMismatch:
	default:
		if p != "" {
			ip = netip.Addr{}
		}
	}
	// Only the spend that empties the bucket cuts off and reports; later
	// spends during the ban are counted but would repeat the event.
	if p != "" {
		if v := n.limiter.SpendPeer(string(p), r); v.NewlyExhausted {
			n.cutOff(ConnectionLimit{Peer: p, Reason: r, Until: v.Until})
		}
	}
	if ip.IsValid() {
		if v := n.limiter.SpendIP(ip, r); v.NewlyExhausted {
			n.cutOff(ConnectionLimit{IP: ip, Reason: r, Until: v.Until})
		}
	}
}

// cutOff closes every connection of a rate-limited peer or IP. The gater
// refuses it from then on, until the limiter lets it back.
func (n *Node) cutOff(ev ConnectionLimit) {
	n.log.Warn("rate limit exhausted: disconnecting", zap.Stringer("peer", ev.Peer), zap.String("peer_name", n.refusals.name(ev.Peer)),
		zap.Stringer("ip", ev.IP), zap.Stringer("reason", ev.Reason))
	n.metrics.limited(ev)
	n.events.Push(ev, false)
	if !n.started.Load() {
		// The gater refuses it from now on; there is no connection yet to close.
		return
	}
	for _, c := range n.host.Network().Conns() {
		if (ev.Peer != "" && c.RemotePeer() == ev.Peer) || (ev.IP.IsValid() && sameIPKey(remoteIP(c), ev.IP)) {
			// Closing waits on the muxer: not on the caller's goroutine,
			// which may be a stream handler of this very connection.
			n.closeConnAsync(c)
		}
	}
}

// enforceAllowlist closes every connection the allowlist no longer admits.
func (n *Node) enforceAllowlist() {
	if !n.started.Load() {
		return
	}
	for _, c := range n.host.Network().Conns() {
		if !n.admits(c) {
			n.log.Info("peer no longer allowlisted: disconnecting", zap.Stringer("peer", c.RemotePeer()))
			n.closeConnAsync(c)
		}
	}
}

// admits reports whether the allowlist admits c as it stands now: a direct
// connection by its peer's entry and IP binding, a relayed one by the
// relayed-connection policy (gater.go).
func (n *Node) admits(c network.Conn) bool {
	if r, relayed := relayOf(c.RemoteMultiaddr()); relayed {
		e, ok := n.cfg.Allowlist.Get(c.RemotePeer())
		return ok && e.AllowsRelayed() && n.cfg.Allowlist.Contains(r)
	}
	return n.cfg.Allowlist.Allowed(c.RemotePeer(), remoteIP(c))
}

func (n *Node) closeConnAsync(c network.Conn) {
	if n.ctx.Err() != nil {
		return
	}
	n.conns.of(c).closedHere.Store(true)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		c.Close()
	}()
}

// sameIPKey reports whether a and b share a rate-limit key: the same IPv4
// address, or the same IPv6 /64 (one host usually owns a /64).
func sameIPKey(a, b netip.Addr) bool {
	if a.Is4() || b.Is4() {
		return a == b
	}
	pa, _ := a.Prefix(64)
	pb, _ := b.Prefix(64)
	return pa == pb
}
