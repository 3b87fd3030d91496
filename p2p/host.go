package p2p

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// newHost builds the libp2p host: TCP only, Noise only, yamux, our gater and
// resource limits; relay, hole punching, NAT port mapping and libp2p's own
// metrics off.
func newHost(cfg Config, g *gater) (host.Host, error) {
	rm, err := newResourceManager(cfg)
	if err != nil {
		return nil, err
	}
	var tcpOpts []interface{}
	if !cfg.ReusePort {
		tcpOpts = append(tcpOpts, tcp.DisableReuseport())
	}
	opts := []libp2p.Option{
		libp2p.Identity(cfg.Key),
		libp2p.ListenAddrs(cfg.ListenAddrs...),
		libp2p.NoTransports,
		// Reuseport (see Config.ReusePort) lets an outbound connection share the listening port.
		// Re-dialing a peer straight after a disconnect then collided with
		// the old 4-tuple in TIME_WAIT ("noise: message is too short",
		// resets, dial backoff); without it every dial gets a fresh port.
		//
		// TCP and Noise are both wrapped so that a failed inbound
		// handshake costs its source IP a token (handshake.go).
		libp2p.Transport(guardedTCP(g.charge), tcpOpts...),
		libp2p.Security(noise.ID, guardedNoise(g.charge)),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ConnectionGater(g),
		libp2p.ResourceManager(rm),
		// Every connection is allowlisted by construction (the gater admits
		// nobody else), so trimming could only ever cut an operator off.
		// The resource manager bounds how many there can be.
		libp2p.ConnectionManager(connmgr.NullConnMgr{}),
		libp2p.DisableRelay(),
		libp2p.Ping(false),
		// Observed addresses only serve NAT traversal, which the node does
		// not do; and go-libp2p v0.51's observed-address manager stops
		// reading its identify subscription at shutdown, which can wedge
		// the event bus and hang Host.Close (seen with 30 nodes closing).
		libp2p.DisableIdentifyAddressDiscovery(),
	}
	if cfg.Metrics != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(cfg.Metrics))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	opts = append(opts, cfg.HostOptions...)
	h, err := libp2p.New(opts...)
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("p2p: start host: %w", err)
	}
	conns := func(p peer.ID) int { return len(h.Network().ConnsToPeer(p)) }
	g.conns.Store(&conns)
	return h, nil
}
