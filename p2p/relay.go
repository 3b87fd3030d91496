package p2p

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// Circuit relays (go-libp2p's circuit relay v2), for operators behind NAT.
// A member relay serves allowlisted peers only; a node that names static
// relays keeps reservations on them (AutoRelay) and is dialable through
// them; hole punching (DCUtR) upgrades a relayed connection to a direct one
// when both NATs allow it. docs/operations.md §"Relays and NAT" and
// docs/security.md §"Relayed connections" say what an operator sees.

// Defaults of RelayService's zero values. The library's own (2 minutes and
// 128 KiB per circuit) would cut an exchange of a few 1 MiB messages, and
// a 2 KiB copy buffer would make a relayed message crawl.
const (
	DefaultRelayMaxReservations = 128
	DefaultRelayMaxCircuits     = 16
	DefaultRelayCircuitDuration = time.Hour
	DefaultRelayCircuitData     = 1 << 30 // per direction
	DefaultRelayBufferSize      = 32 << 10
	// relayReservationTTL is how long a reservation lasts unless renewed;
	// AutoRelay renews it two minutes before it ends.
	relayReservationTTL = time.Hour
	// relayRetry is how soon a static relay that refused or failed a
	// reservation is tried again, and how often AutoRelay looks for the
	// relays it lost. AutoRelay's own default (an hour) would leave a node
	// undialable for that long after its relay restarted.
	relayRetry       = 15 * time.Second
	relayMinInterval = 5 * time.Second
)

// RelayService makes a node a circuit relay v2 for its allowlisted peers:
// both ends of every reservation and circuit must be on the allowlist, and
// a request refused for its sender's sake (not a member, or cut off) costs
// the sender a misbehaviour token (ratelimit.Unauthorized); a circuit
// refused for its destination's sake costs the source one only past a few
// free ones per destination and window (relay_refused.go), which an honest
// source never asks for. Zero values mean the defaults above.
type RelayService struct {
	// Enabled turns the relay on.
	Enabled bool
	// MaxReservations is how many peers may hold a reservation at once.
	MaxReservations int
	// MaxCircuits is how many circuits one peer may have open through
	// the relay at once.
	MaxCircuits int
	// CircuitDuration and CircuitData bound one circuit: it is reset after
	// that long or that many bytes in either direction, and the handler
	// redials. Relayed connections are therefore "limited" in go-libp2p's
	// sense; the node opens its streams on them all the same.
	CircuitDuration time.Duration
	CircuitData     int64
}

func (r RelayService) withDefaults() RelayService {
	setDefault(&r.MaxReservations, DefaultRelayMaxReservations)
	setDefault(&r.MaxCircuits, DefaultRelayMaxCircuits)
	setDefault(&r.CircuitDuration, DefaultRelayCircuitDuration)
	if r.CircuitData <= 0 {
		r.CircuitData = DefaultRelayCircuitData
	}
	return r
}

// resources are the circuit relay's limits for r.
func (r RelayService) resources() relay.Resources {
	rc := relay.DefaultResources()
	rc.Limit = &relay.RelayLimit{Duration: r.CircuitDuration, Data: r.CircuitData}
	rc.ReservationTTL = relayReservationTTL
	rc.MaxReservations = r.MaxReservations
	rc.MaxCircuits = r.MaxCircuits
	rc.BufferSize = DefaultRelayBufferSize
	return rc
}

// ErrBadRelayAddr is the error of a Config.Relays address that does not
// name a relay: it must be a transport address ending in /p2p/<id>.
var ErrBadRelayAddr = fmt.Errorf("p2p: relay address must be a transport address ending in /p2p/<peer ID>")

// staticRelays parses Config.Relays, which must each name one peer by a
// direct (not relayed) address.
func staticRelays(self peer.ID, addrs []ma.Multiaddr) ([]peer.AddrInfo, error) {
	byID := make(map[peer.ID]int)
	var out []peer.AddrInfo
	for _, a := range addrs {
		tpt, id := peer.SplitAddr(a)
		if id == "" || tpt == nil || isRelayed(tpt) {
			return nil, fmt.Errorf("%w: %s", ErrBadRelayAddr, a)
		}
		if id == self {
			return nil, fmt.Errorf("%w: %s is this node itself", ErrBadRelayAddr, a)
		}
		if i, ok := byID[id]; ok {
			out[i].Addrs = append(out[i].Addrs, tpt)
			continue
		}
		byID[id] = len(out)
		out = append(out, peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{tpt}})
	}
	return out, nil
}

// relayHostOptions are the libp2p options for the node's relay settings:
// the circuit transport, the relay service, AutoRelay and hole punching, or
// relaying off altogether when none is asked for.
func relayHostOptions(cfg Config, rs *relayState) []libp2p.Option {
	if !cfg.Relay.Enabled && len(cfg.relays) == 0 {
		// Observed addresses only serve NAT traversal, which the node does
		// not do then; and go-libp2p v0.51's observed-address manager stops
		// reading its identify subscription at shutdown, which can wedge
		// the event bus and hang Host.Close (seen with 30 nodes closing).
		return []libp2p.Option{libp2p.DisableRelay(), libp2p.DisableIdentifyAddressDiscovery()}
	}
	// One circuit per relay and dial: the relay charges a source that asks
	// it again for a destination it refused (relay_refused.go).
	opts := []libp2p.Option{libp2p.EnableRelay(), libp2p.SwarmOpts(swarm.WithDialRanker(oneCircuitPerRelay))}
	if cfg.Relay.Enabled {
		svc := cfg.Relay.withDefaults()
		opts = append(opts, libp2p.EnableRelayService(
			relay.WithResources(svc.resources()),
			relay.WithACL(&memberACL{cfg: cfg, charge: rs.charge, favours: newRefusalFavours(time.Now)}),
			// Members reserve over private networks too (a data centre
			// LAN, a VPN): the reservation names every address of the
			// relay, not only public ones.
			relay.WithReservationAddressFilter(func(ma.Multiaddr) bool { return true }),
			relay.WithMetricsTracer(rs.serviceTracer()),
		))
	}
	switch {
	case len(cfg.relays) > 0 && cfg.Reachability != network.ReachabilityPublic:
		// A node that names relays is one that cannot be dialed directly:
		// it says so rather than waiting for AutoNAT, whose dial-back comes
		// from a throwaway key the members' allowlists refuse (see
		// docs/security.md). Being private is what starts AutoRelay.
		opts = append(opts, libp2p.ForceReachabilityPrivate(),
			libp2p.EnableAutoRelayWithStaticRelays(cfg.relays,
				autorelay.WithBootDelay(0),
				autorelay.WithBackoff(relayRetry),
				autorelay.WithMinInterval(relayMinInterval),
				autorelay.WithMetricsTracer(rs.autorelayTracer())))
	case cfg.Relay.Enabled || cfg.Reachability == network.ReachabilityPublic:
		// A relay is publicly reachable by definition: go-libp2p starts
		// the relay service only on a node it believes public.
		opts = append(opts, libp2p.ForceReachabilityPublic())
	}
	if cfg.HolePunching {
		opts = append(opts, libp2p.EnableHolePunching(holepunch.WithTracer(rs.holePunchTracer())))
	} else {
		opts = append(opts, libp2p.DisableIdentifyAddressDiscovery())
	}
	return opts
}

// memberACL is the relay's access control: only allowlisted peers reserve,
// and a circuit joins two allowlisted peers. The gater already keeps
// strangers off the relay; this also stops a member from using the relay
// to reach someone who is not one, or a rate-limited peer from using it at
// all.
type memberACL struct {
	cfg    Config
	charge func(peer.ID, ratelimit.Reason)
	// favours are the free refusals for a destination's sake; nil makes
	// them all free.
	favours *refusalFavours
}

// AllowReserve admits a reservation from a listed peer that is not cut off.
func (a *memberACL) AllowReserve(p peer.ID, _ ma.Multiaddr) bool {
	if a.cfg.Allowlist.Contains(p) && !a.cfg.Limiter.PeerBanned(string(p)) {
		return true
	}
	a.charge(p, ratelimit.Unauthorized)
	return false
}

// AllowConnect admits a circuit between two listed peers, neither cut off.
// A refusal for the source's own sake (not a member, or cut off) is
// charged to it. One for the destination's sake is charged only past the
// favours (relay_refused.go): the source cannot know that the destination
// is cut off here before it asks, and a member that gets itself cut off
// and then has an honest member dial it through this relay (by sending it
// requests with this relay's circuit address as its own) would otherwise
// have the honest member charged for every answer, until it lost its
// reservation here too. A destination missing from this relay's allowlist
// is the same honest mistake while allowlists are being rolled out. An
// honest member, told PERMISSION_DENIED, does not ask this relay for that
// destination again for relayRefusedTTL, so it stays within the favours
// whatever the member cut off here makes it do; a source that keeps asking
// is probing which members are cut off here or making the relay spend
// streams for nothing, and pays as for any refusal.
func (a *memberACL) AllowConnect(src peer.ID, _ ma.Multiaddr, dest peer.ID) bool {
	if !a.cfg.Allowlist.Contains(src) || a.cfg.Limiter.PeerBanned(string(src)) {
		a.charge(src, ratelimit.Unauthorized)
		return false
	}
	if a.cfg.Allowlist.Contains(dest) && !a.cfg.Limiter.PeerBanned(string(dest)) {
		return true
	}
	if !a.favours.free(src, dest) {
		a.charge(src, ratelimit.Unauthorized)
	}
	return false
}

// isRelayed reports whether a is a circuit relay address.
func isRelayed(a ma.Multiaddr) bool {
	if a == nil {
		return false
	}
	for _, c := range a {
		if c.Code() == ma.P_CIRCUIT {
			return true
		}
	}
	return false
}

// relayOf returns the relay a circuit address goes through: the /p2p
// component before /p2p-circuit. ok is false for a direct address.
func relayOf(a ma.Multiaddr) (relay peer.ID, ok bool) {
	var last peer.ID
	for _, c := range a {
		switch c.Code() {
		case ma.P_P2P:
			id, err := peer.IDFromBytes(c.RawValue())
			if err != nil {
				return "", false
			}
			last = id
		case ma.P_CIRCUIT:
			return last, true
		}
	}
	return "", false
}

// IsRelayed reports whether a connection's remote address goes through a
// circuit relay (it holds /p2p-circuit), as Connected.Addr and
// PeerConns.Addrs show it.
func IsRelayed(a ma.Multiaddr) bool { return isRelayed(a) }

// relayAwareRM is the resource manager with relayed connections kept out
// of the per-IP limits: their IP is the relay's, and in a hub deployment
// every member's connections to a node come through one relay, so the
// per-IP connection cap and rate would cap the whole committee at what one
// host may have. They are bounded per peer, by the relay's circuit limits
// and by the system and transient limits instead; and while an inbound one
// is still in its handshake, by pending (relay_admission.go).
type relayAwareRM struct {
	network.ResourceManager
	// pending bounds inbound relayed handshakes; nil bounds nothing.
	pending *relayPending
}

func (r relayAwareRM) OpenConnection(dir network.Direction, usefd bool, endpoint ma.Multiaddr) (network.ConnManagementScope, error) {
	if !isRelayed(endpoint) {
		return r.ResourceManager.OpenConnection(dir, usefd, endpoint)
	}
	var release func()
	if dir == network.DirInbound && r.pending != nil {
		// An address without the relay's ID (which go-libp2p always
		// writes) is counted under the empty ID: still in the total.
		relay, _ := relayOf(endpoint)
		var err error
		if release, err = r.pending.open(relay); err != nil {
			return nil, err
		}
	}
	var scope network.ConnManagementScope
	var err error
	if noIP, ok := r.ResourceManager.(interface {
		OpenConnectionNoIP(network.Direction, bool, ma.Multiaddr) (network.ConnManagementScope, error)
	}); ok {
		scope, err = noIP.OpenConnectionNoIP(dir, usefd, endpoint)
	} else {
		scope, err = r.ResourceManager.OpenConnection(dir, usefd, endpoint)
	}
	switch {
	case release == nil:
		return scope, err
	case err != nil:
		release()
		return nil, err
	}
	return &pendingScope{ConnManagementScope: scope, release: release}, nil
}
