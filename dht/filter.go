package dht

import (
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
)

// admits reports whether p may be in the routing table or be queried: it is
// allowlisted and the node's rate limiter has not cut it off. kad-dht asks
// before adding a peer to the routing table and before querying a peer a
// lookup learned of, so a stranger can neither join nor be handed on to the
// next hop (the gater would refuse the connection anyway).
func (d *DHT) admits(p peer.ID) bool {
	return d.cfg.Allowlist.Contains(p) && !d.node.Limiter().PeerBanned(string(p))
}

// Evict removes p from the routing table and forgets its resolved address.
// Call it when the p2p node reports a ConnectionLimit for p: the node's
// Receiver channel belongs to its user, so the DHT cannot see the event
// itself. It also notices bans on its own, within Config.SweepInterval.
// While p stays banned or off the allowlist the filters keep it out, except
// that kad-dht re-adds a peer that answers a query already in flight; the
// periodic sweep removes it again.
func (d *DHT) Evict(p peer.ID) {
	d.kad.RoutingTable().RemovePeer(p)
	d.cache.forget(p)
}

// onAllowlistChange evicts the peers the allowlist dropped and, when
// records are sealed, has the node republish for the new members.
func (d *DHT) onAllowlistChange(c allowlist.Change) {
	for _, e := range c.Removed {
		d.log.Info("peer left the allowlist: evicting", zap.Stringer("peer", e.ID))
		d.Evict(e.ID)
		// kad-dht will not ask it again: its refusal explains nothing.
		d.reached(e.ID)
	}
	if d.cfg.Membership != nil && len(c.Added)+len(c.Removed) > 0 {
		signal(d.membersChanged)
	}
}

// sweep evicts the routing table's peers that are no longer admitted: a ban
// by the rate limiter has no notification the DHT can subscribe to.
func (d *DHT) sweep() {
	for _, p := range d.kad.RoutingTable().ListPeers() {
		if !d.admits(p) {
			d.log.Info("peer no longer admitted: evicting", zap.Stringer("peer", p))
			d.Evict(p)
		}
	}
}
