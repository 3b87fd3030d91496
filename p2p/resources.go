package p2p

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// Resource limits. An operator node talks to a known, small set of peers, so
// the limits are sized for tens of peers, not the public network's thousands:
// generous per allowlisted peer, tight for connections not yet authenticated
// (the transient scope), where a stranger lives until the gater refuses it.
const (
	limitSystemConns     = 1024 // every allowlisted peer, a few connections each
	limitSystemStreams   = 8192
	limitSystemMemory    = 1 << 30
	limitTransientConns  = 64 // connections in the handshake, not yet a peer's
	limitTransientStream = 64
	limitTransientMemory = 16 << 20
	limitPeerConns       = 8 // a redial can overlap the old connection
	limitPeerStreams     = 512
	limitPeerMemory      = 64 << 20 // 64 MiB: room for a few max-size messages in flight
	limitConnsPerIP      = 16       // outside loopback; one operator host rarely needs more
)

func newResourceManager(cfg Config) (network.ResourceManager, error) {
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Conns:   rcmgr.LimitVal(limitSystemConns),
			Streams: rcmgr.LimitVal(limitSystemStreams),
			Memory:  rcmgr.LimitVal64(limitSystemMemory),
			FD:      rcmgr.LimitVal(limitSystemConns),
		},
		Transient: rcmgr.ResourceLimits{
			Conns:   rcmgr.LimitVal(limitTransientConns),
			Streams: rcmgr.LimitVal(limitTransientStream),
			Memory:  rcmgr.LimitVal64(limitTransientMemory),
		},
		PeerDefault: rcmgr.ResourceLimits{
			Conns:   rcmgr.LimitVal(limitPeerConns),
			Streams: rcmgr.LimitVal(limitPeerStreams),
			Memory:  rcmgr.LimitVal64(limitPeerMemory),
		},
		ProtocolPeer: map[protocol.ID]rcmgr.ResourceLimits{
			ProtocolID: {
				StreamsInbound:  rcmgr.LimitVal(cfg.StreamsPerPeer),
				StreamsOutbound: rcmgr.LimitVal(cfg.StreamsPerPeer),
				Streams:         rcmgr.LimitVal(2 * cfg.StreamsPerPeer),
			},
		},
	}
	limits := partial.Build(rcmgr.DefaultLimits.AutoScale())
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits),
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: limitConnsPerIP}},
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 64, ConnCount: limitConnsPerIP}},
		),
		rcmgr.WithMetricsDisabled(),
	)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	return rm, nil
}
