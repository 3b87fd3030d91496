package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

const echoProtocol = "/bench/echo/1.0.0"

// BarePair is two plain go-libp2p hosts on loopback, configured like the
// project's (TCP, Noise, yamux, no reuseport) but with nothing of ours on
// top: no gater, no acks, no channels. The second echoes what it reads.
type BarePair struct {
	Client, Server host.Host
}

// NewBarePair starts the two hosts.
func NewBarePair() (*BarePair, error) {
	c, err := bareHost()
	if err != nil {
		return nil, err
	}
	s, err := bareHost()
	if err != nil {
		c.Close()
		return nil, err
	}
	s.SetStreamHandler(echoProtocol, echo)
	return &BarePair{Client: c, Server: s}, nil
}

// echo writes back what it reads on st until the other end closes it.
func echo(st network.Stream) {
	io.Copy(st, st)
	st.Close()
}

func bareHost() (host.Host, error) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	rm, err := bareResourceManager()
	if err != nil {
		return nil, err
	}
	return libp2p.New(
		libp2p.Identity(k),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.NoTransports,
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.ResourceManager(rm),
	)
}

// bareResourceManager is the resource manager libp2p.New would build by
// default, its limits scaled to this machine, with room for the
// connections the workloads make (bareLimits). Its scopes are the
// default's, so each connection costs what it would by default.
func bareResourceManager() (network.ResourceManager, error) {
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(bareLimits()))
}

// bareLimits is go-libp2p's default limits scaled to this machine, with
// the system and transient connection limits raised so that one host can
// make MaxIdleConns connections (IdleConnMemory, all at once too): the
// scaled defaults refuse that on a small machine, and a baseline that
// cannot make its connections measures nothing.
func bareLimits() rcmgr.ConcreteLimitConfig {
	base := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&base)
	room := rcmgr.ResourceLimits{
		Conns:         rcmgr.LimitVal(2 * MaxIdleConns),
		ConnsInbound:  rcmgr.LimitVal(2 * MaxIdleConns),
		ConnsOutbound: rcmgr.LimitVal(2 * MaxIdleConns),
		FD:            rcmgr.LimitVal(4 * MaxIdleConns),
	}
	return rcmgr.PartialLimitConfig{System: room, Transient: room}.Build(base.AutoScale())
}

// Close stops both hosts.
func (p *BarePair) Close() {
	p.Client.Close()
	p.Server.Close()
}

func (p *BarePair) serverInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: p.Server.ID(), Addrs: p.Server.Addrs()}
}

// EchoStream is an open stream to the echoing host.
type EchoStream struct {
	s network.Stream
}

// Stream connects and opens one echo stream, to be reused for many rounds.
func (p *BarePair) Stream(ctx context.Context) (*EchoStream, error) {
	return openEcho(ctx, p.Client, p.serverInfo())
}

// openEcho connects c to the echoing host to and opens one echo stream.
func openEcho(ctx context.Context, c host.Host, to peer.AddrInfo) (*EchoStream, error) {
	if err := c.Connect(ctx, to); err != nil {
		return nil, err
	}
	s, err := c.NewStream(ctx, to.ID, echoProtocol)
	if err != nil {
		return nil, err
	}
	return &EchoStream{s: s}, nil
}

// RoundTrips times n echo round trips of size bytes, one in flight: the
// floor any acked message protocol on libp2p is measured against.
func (e *EchoStream) RoundTrips(n, size int) (time.Duration, error) {
	out, in := make([]byte, size), make([]byte, size)
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := echoRound(e.s, out, in); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// sequentialEcho is the largest message echoRound writes before it starts
// reading the echo: well below what yamux buffers each way (its initial
// window is 256 KiB), so that the echo cannot fill our receive window
// while we are still writing.
const sequentialEcho = 64 << 10

// echoRound writes out on s and reads its echo into in. A larger message
// is written while the echo is read: written whole first, the echoing host
// blocks on our full receive window, stops reading, and both ends wait on
// each other for ever.
func echoRound(s io.ReadWriter, out, in []byte) error {
	if len(out) <= sequentialEcho {
		if _, err := s.Write(out); err != nil {
			return err
		}
		_, err := io.ReadFull(s, in)
		return err
	}
	werr := make(chan error, 1)
	go func() {
		_, err := s.Write(out)
		werr <- err
	}()
	_, rerr := io.ReadFull(s, in)
	if err := <-werr; err != nil {
		return err
	}
	return rerr
}

// RoundTrips opens a stream and times n round trips on it.
func (p *BarePair) RoundTrips(ctx context.Context, n, size int) (time.Duration, error) {
	e, err := p.Stream(ctx)
	if err != nil {
		return 0, err
	}
	defer e.s.Reset()
	return e.RoundTrips(n, size)
}

// NewConnExchanges times n exchanges that each dial a fresh connection, echo
// one message and close it: the floor for a request that dials and hangs up.
func (p *BarePair) NewConnExchanges(ctx context.Context, n, size int) (time.Duration, error) {
	out, in := make([]byte, size), make([]byte, size)
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := p.Client.Connect(ctx, p.serverInfo()); err != nil {
			return 0, err
		}
		s, err := p.Client.NewStream(ctx, p.Server.ID(), echoProtocol)
		if err != nil {
			return 0, err
		}
		if err := echoRound(s, out, in); err != nil {
			return 0, fmt.Errorf("echo: %w", err)
		}
		s.Close()
		if err := p.Client.Network().ClosePeer(p.Server.ID()); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}
