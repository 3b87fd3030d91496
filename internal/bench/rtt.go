package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// DialedRoundTrips times n exchanges that each dial a fresh connection
// through a DelayProxy delaying each direction by oneWay, and returns the
// mean duration of one in round trips (2 × oneWay): ours is the handler's
// default, a request from Request to its Outcome on a connection dialed
// for it; bare is go-libp2p's connect, echo stream and one echo. Each side
// forgets the other's real address before each dial (identify teaches
// it), so every dial goes through the proxy. Ours and the baseline take
// turns, one exchange each.
func DialedRoundTrips(ctx context.Context, n int, oneWay time.Duration) (ours, bare float64, err error) {
	hp, err := NewHandlerPair(nil)
	if err != nil {
		return 0, 0, err
	}
	defer hp.Close()
	bp, err := NewBarePair()
	if err != nil {
		return 0, 0, err
	}
	defer bp.Close()
	ourProxy, err := proxyTo(hp.B.Node().Host(), oneWay)
	if err != nil {
		return 0, 0, err
	}
	defer ourProxy.Close()
	bareProxy, err := proxyTo(bp.Server, oneWay)
	if err != nil {
		return 0, 0, err
	}
	defer bareProxy.Close()
	ourAddr, err := manet.FromNetAddr(ourProxy.Addr())
	if err != nil {
		return 0, 0, err
	}
	bareAddr, err := manet.FromNetAddr(bareProxy.Addr())
	if err != nil {
		return 0, 0, err
	}

	msg := make([]byte, 256)
	var oursTotal, bareTotal time.Duration
	for range n {
		a, to := hp.A.Node().Host(), hp.B.PeerID()
		a.Peerstore().ClearAddrs(to)
		start := time.Now()
		id, err := hp.A.Request(to, ourAddr, msg)
		if err != nil {
			return 0, 0, err
		}
		if err := awaitExchange(ctx, hp.A, id); err != nil {
			return 0, 0, err
		}
		oursTotal += time.Since(start)
		if err := a.Network().ClosePeer(to); err != nil {
			return 0, 0, err
		}

		d, err := bareDialedEcho(ctx, bp.Client, bp.Server.ID(), bareAddr, msg)
		if err != nil {
			return 0, 0, fmt.Errorf("bare: %w", err)
		}
		bareTotal += d
	}
	rtt := float64(2*oneWay) * float64(n)
	return float64(oursTotal) / rtt, float64(bareTotal) / rtt, nil
}

// proxyTo starts a DelayProxy to h's first listen address.
func proxyTo(h host.Host, oneWay time.Duration) (*DelayProxy, error) {
	addr, err := manet.ToNetAddr(h.Addrs()[0])
	if err != nil {
		return nil, err
	}
	return NewDelayProxy(addr.String(), oneWay)
}

// bareDialedEcho connects c to the echoing host at addr, echoes msg on a
// new stream, and closes the connection; it returns the time to the echo.
func bareDialedEcho(ctx context.Context, c host.Host, to peer.ID, addr ma.Multiaddr, msg []byte) (time.Duration, error) {
	c.Peerstore().ClearAddrs(to)
	in := make([]byte, len(msg))
	start := time.Now()
	if err := c.Connect(ctx, peer.AddrInfo{ID: to, Addrs: []ma.Multiaddr{addr}}); err != nil {
		return 0, err
	}
	s, err := c.NewStream(ctx, to, echoProtocol)
	if err != nil {
		return 0, err
	}
	if err := echoRound(s, msg, in); err != nil {
		return 0, err
	}
	d := time.Since(start)
	s.Close()
	return d, c.Network().ClosePeer(to)
}
