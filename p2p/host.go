package p2p

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/core/transport"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"go.uber.org/fx"
)

// newHost builds the libp2p host: TCP only, Noise only, yamux, our gater and
// resource limits; relaying and hole punching as cfg asks (relay.go), NAT
// port mapping off, libp2p's own metrics only with cfg.Metrics.
func newHost(cfg Config, g *gater, rs *relayState) (host.Host, error) {
	rm, err := newResourceManager(cfg, g.pending)
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
		libp2p.Transport(guardedTCP(g.charge, g.declines, g.now), tcpOpts...),
		libp2p.Security(noise.ID, guardedNoise(g.charge, g.wrongAddr)),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ConnectionGater(g),
		libp2p.ResourceManager(rm),
		// Every connection is allowlisted by construction (the gater admits
		// nobody else), so trimming could only ever cut an operator off.
		// The resource manager bounds how many there can be. The manager
		// only records reservations, for Node.Relaying (relay_keep.go).
		libp2p.ConnectionManager(rs.marks),
		// Ping answers "p2pnode check" (check.go); like every protocol,
		// only for allowlisted peers.
		libp2p.Ping(true),
		// Config.DialTimeout bounds each dial, whatever the address: the
		// swarm's own limit is 15 s, and 5 s for loopback and private
		// addresses (a LAN, a VPN), which cut a handshake slowed by load
		// short of the DialTimeout a caller set.
		libp2p.SwarmOpts(swarm.WithDialTimeout(cfg.DialTimeout), swarm.WithDialTimeoutLocal(cfg.DialTimeout)),
		// And Config.HandshakeTimeout bounds each inbound handshake, which
		// go-libp2p cuts at 15 s and offers no option for.
		libp2p.WithFxOption(fx.Decorate(fx.Annotate(acceptTimeoutUpgrader(cfg.HandshakeTimeout), fx.ParamTags(`name:"security"`)))),
	}
	opts = append(opts, relayHostOptions(cfg, rs)...)
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

// acceptTimeoutUpgrader returns an fx decorator of go-libp2p's upgrader: the
// same upgrader, built from the same parts as libp2p.New builds it, with d
// as its accept timeout, which bounds every inbound connection from accept
// until the swarm takes it, handshakes included. Its signature mirrors
// upgrader.New's, which is what fx injects.
func acceptTimeoutUpgrader(d time.Duration) func([]sec.SecureTransport, []tptu.StreamMuxer, pnet.PSK, network.ResourceManager, connmgr.ConnectionGater) (transport.Upgrader, error) {
	return func(security []sec.SecureTransport, muxers []tptu.StreamMuxer, psk pnet.PSK, rm network.ResourceManager, g connmgr.ConnectionGater) (transport.Upgrader, error) {
		return tptu.New(security, muxers, psk, rm, g, tptu.WithAcceptTimeout(d))
	}
}
