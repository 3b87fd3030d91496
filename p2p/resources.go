package p2p

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/x/rate"
)

// Resource limits: go-libp2p's resource manager with every number chosen
// here, none scaled from the machine it happens to run on. docs/security.md
// gives the reasoning behind each; the short version is in the comments.
//
// The shape of the problem: an operator node talks to a known set of tens of
// peers. Every connection that reaches a peer scope has passed the gater,
// so it belongs to an allowlisted key: the per-peer limits are the room an
// allowlisted peer gets. A stranger never gets a peer scope: it lives in the
// transient scope (connections still in their handshake, streams still
// negotiating a protocol) until the gater throws it out, so the transient
// limits are all an unknown party can ever hold.
const (
	// System: the whole node. A committee of ~100 operators at two
	// connections each is 200; 1024 leaves room for redials and the DHT.
	// One descriptor per connection; Go raises the soft descriptor limit
	// to the hard one at start-up, which is well above this on Linux.
	limitSystemConns   = 1024
	limitSystemStreams = 8192    // 8 per connection on average
	limitSystemMemory  = 1 << 30 // 1 GiB reserved by muxers and streams, all peers together
	limitSystemFD      = limitSystemConns

	// Transient: connections in their handshake, streams in protocol
	// negotiation. An honest handshake lasts milliseconds, so even a busy
	// node has a handful here at once; 64 inbound handshakes is a stall of
	// 64 connections held open until the accept timeout, each of which is
	// then charged to its IP (handshake.go).
	limitTransientConns   = 64
	limitTransientStreams = 256 // several times one peer's inbound streams: one peer cannot fill it
	limitTransientMemory  = 16 << 20

	// Per allowlisted peer. One connection is normal, two while a redial
	// overlaps the old one or both sides dial at once; 8 is generous, and
	// the gater charges the peer for every inbound connection past it.
	limitPeerConns = 8
	// Streams of every protocol but ours: identify, the DHT's queries.
	// Message streams come on top (messageStreamLimits).
	limitPeerStreamsIn  = 64
	limitPeerStreamsOut = 64
	// 64 MiB: a few maximum-size (1 MiB) messages in flight on each of
	// a couple of streams, with yamux windows grown to their full size.
	limitPeerMemory = 64 << 20

	// Per connection and per stream: yamux reserves its receive windows
	// here. 16 MiB is yamux's largest window; a connection holds two such
	// streams at full speed.
	limitConnMemory   = 32 << 20
	limitStreamMemory = 16 << 20

	// Protocols other than ours (identify, the DHT), per peer and in
	// total. Identify uses one or two streams per connection; a DHT query
	// one per request.
	limitProtoPeerStreams = 32
	limitProtoStreams     = 1024

	// Connections per source IP (IPv4 /32, IPv6 /64, the block one host
	// controls), counted in both directions. Two nodes on one host (or
	// behind one NAT) at limitPeerConns each. Loopback is exempt: local
	// deployments and tests run many nodes on 127.0.0.1, and a local
	// attacker has better weapons than connections.
	limitConnsPerIP = 2 * limitPeerConns

	// New connections per source IP, per second, sustained and in a burst,
	// both directions. A handler that dials for every exchange and hangs
	// up afterwards makes one connection per exchange: 20 per second to one
	// peer is far more than an operator does, and the burst covers a
	// restart reconnecting everything at once. (libp2p's own default, 1
	// per 5 s after a burst of 16, would throttle that handler.) Loopback
	// is exempt, as above.
	connRatePerIP  = 20
	connBurstPerIP = 64
)

// messageStreamLimits are the resource manager's limits on our own
// protocol per peer. They sit above Config.StreamsPerPeer on purpose: the
// node's own counter must see the excess streams of a flood to charge them
// (receive.go); the resource manager is the backstop that refuses them
// silently if they come faster than the node resets them.
func messageStreamLimits(streamsPerPeer int) rcmgr.ResourceLimits {
	return rcmgr.ResourceLimits{
		StreamsInbound:  rcmgr.LimitVal(2 * streamsPerPeer),
		StreamsOutbound: rcmgr.LimitVal(2 * streamsPerPeer),
		Streams:         rcmgr.LimitVal(4 * streamsPerPeer),
		Memory:          rcmgr.LimitVal64(limitPeerMemory),
	}
}

// limitConfig is the full set of limits for cfg.
func limitConfig(cfg Config) rcmgr.ConcreteLimitConfig {
	msg := messageStreamLimits(cfg.StreamsPerPeer)
	peerIn := limitPeerStreamsIn + int(msg.StreamsInbound)
	peerOut := limitPeerStreamsOut + int(msg.StreamsOutbound)
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Conns:           rcmgr.LimitVal(limitSystemConns),
			ConnsInbound:    rcmgr.LimitVal(limitSystemConns / 2),
			ConnsOutbound:   rcmgr.LimitVal(limitSystemConns / 2),
			Streams:         rcmgr.LimitVal(limitSystemStreams),
			StreamsInbound:  rcmgr.LimitVal(limitSystemStreams / 2),
			StreamsOutbound: rcmgr.LimitVal(limitSystemStreams / 2),
			Memory:          rcmgr.LimitVal64(limitSystemMemory),
			FD:              rcmgr.LimitVal(limitSystemFD),
		},
		Transient: rcmgr.ResourceLimits{
			Conns:           rcmgr.LimitVal(2 * limitTransientConns),
			ConnsInbound:    rcmgr.LimitVal(limitTransientConns),
			ConnsOutbound:   rcmgr.LimitVal(limitTransientConns),
			Streams:         rcmgr.LimitVal(2 * limitTransientStreams),
			StreamsInbound:  rcmgr.LimitVal(limitTransientStreams),
			StreamsOutbound: rcmgr.LimitVal(limitTransientStreams),
			Memory:          rcmgr.LimitVal64(limitTransientMemory),
			FD:              rcmgr.LimitVal(2 * limitTransientConns),
		},
		PeerDefault: rcmgr.ResourceLimits{
			Conns:           rcmgr.LimitVal(limitPeerConns),
			ConnsInbound:    rcmgr.LimitVal(limitPeerConns),
			ConnsOutbound:   rcmgr.LimitVal(limitPeerConns),
			Streams:         rcmgr.LimitVal(peerIn + peerOut),
			StreamsInbound:  rcmgr.LimitVal(peerIn),
			StreamsOutbound: rcmgr.LimitVal(peerOut),
			Memory:          rcmgr.LimitVal64(limitPeerMemory),
			FD:              rcmgr.LimitVal(limitPeerConns),
		},
		Conn: rcmgr.ResourceLimits{
			Memory: rcmgr.LimitVal64(limitConnMemory),
		},
		Stream: rcmgr.ResourceLimits{
			Memory: rcmgr.LimitVal64(limitStreamMemory),
		},
		ProtocolDefault: rcmgr.ResourceLimits{
			Streams:         rcmgr.LimitVal(limitProtoStreams),
			StreamsInbound:  rcmgr.LimitVal(limitProtoStreams / 2),
			StreamsOutbound: rcmgr.LimitVal(limitProtoStreams / 2),
		},
		ProtocolPeerDefault: rcmgr.ResourceLimits{
			Streams:         rcmgr.LimitVal(2 * limitProtoPeerStreams),
			StreamsInbound:  rcmgr.LimitVal(limitProtoPeerStreams),
			StreamsOutbound: rcmgr.LimitVal(limitProtoPeerStreams),
		},
		Protocol: map[protocol.ID]rcmgr.ResourceLimits{
			ProtocolID: {
				Streams:         rcmgr.LimitVal(limitSystemStreams / 2),
				StreamsInbound:  rcmgr.LimitVal(limitSystemStreams / 4),
				StreamsOutbound: rcmgr.LimitVal(limitSystemStreams / 4),
			},
		},
		ProtocolPeer: map[protocol.ID]rcmgr.ResourceLimits{
			ProtocolID: msg,
		},
	}
	// What is not set above (the rcmgr allowlist's scopes, which nothing
	// uses, and the services: identify's limits come from libp2p's own
	// recommendation) is libp2p's default scaled to the system memory and
	// descriptors above, never to the machine.
	base := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&base)
	return partial.Build(base.Scale(limitSystemMemory, limitSystemFD))
}

// loopbackV4 and loopbackV6 are exempt from the per-IP limits.
var (
	loopbackV4 = netip.MustParsePrefix("127.0.0.0/8")
	loopbackV6 = netip.MustParsePrefix("::1/128")
)

// newResourceManager builds the resource manager for cfg; pending bounds
// inbound relayed handshakes (nil: unbounded, for tests of the limits).
func newResourceManager(cfg Config, pending *relayPending) (network.ResourceManager, error) {
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limitConfig(cfg)),
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: limitConnsPerIP}},
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 64, ConnCount: limitConnsPerIP}},
		),
		// Explicit, although it is libp2p's default too: the exemption is
		// a decision, documented in docs/security.md.
		rcmgr.WithNetworkPrefixLimit(
			[]rcmgr.NetworkPrefixLimit{{Network: loopbackV4, ConnCount: math.MaxInt}},
			[]rcmgr.NetworkPrefixLimit{{Network: loopbackV6, ConnCount: math.MaxInt}},
		),
		rcmgr.WithConnRateLimiters(newConnRateLimiter()),
		rcmgr.WithMetricsDisabled(),
	)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	return relayAwareRM{ResourceManager: rm, pending: pending}, nil
}

// newConnRateLimiter limits new connections per source IP; a zero Limit is
// no limit, which is what loopback and the global bucket get.
func newConnRateLimiter() *rate.Limiter {
	perIP := rate.Limit{RPS: connRatePerIP, Burst: connBurstPerIP}
	return &rate.Limiter{
		NetworkPrefixLimits: []rate.PrefixLimit{
			{Prefix: loopbackV4},
			{Prefix: loopbackV6},
		},
		SubnetRateLimiter: rate.SubnetLimiter{
			IPv4SubnetLimits: []rate.SubnetLimit{{PrefixLength: 32, Limit: perIP}},
			IPv6SubnetLimits: []rate.SubnetLimit{{PrefixLength: 64, Limit: perIP}},
			GracePeriod:      time.Minute,
		},
	}
}
