package handler_test

import (
	"context"
	"io"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// The handler's benchmarks run next to bare go-libp2p baselines, so that
// their ratio, measured in one run on one machine, is what gets compared:
//
//	go test -run '^$' -bench . -benchtime 2s ./handler/
//
// An exchange is two acked messages (request and reply), so over a kept
// connection it costs at least two bare round trips; with dialing, one
// connection setup dominates.

const benchPayload = 256

// bareHost is a go-libp2p host configured like a node's: TCP without
// reuseport, Noise, yamux.
func bareHost(b *testing.B) host.Host {
	b.Helper()
	h, err := libp2p.New(
		libp2p.Identity(tu.NewIdentity(b).Key),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.NoTransports,
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.Ping(false),
	)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	return h
}

const echoProto = "/bench/echo/1.0.0"

// bareEcho starts a host that echoes fixed-size messages on each stream.
func bareEcho(b *testing.B) host.Host {
	srv := bareHost(b)
	srv.SetStreamHandler(echoProto, func(s network.Stream) {
		defer s.Close()
		buf := make([]byte, benchPayload)
		for {
			if _, err := io.ReadFull(s, buf); err != nil {
				return
			}
			if _, err := s.Write(buf); err != nil {
				return
			}
		}
	})
	return srv
}

func roundTrip(b *testing.B, s network.Stream, buf []byte) {
	if _, err := s.Write(buf); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(s, buf); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkBareStreamRoundTrip: one stream, 256 B echoed, one in flight.
func BenchmarkBareStreamRoundTrip(b *testing.B) {
	srv, cli := bareEcho(b), bareHost(b)
	ctx := context.Background()
	if err := cli.Connect(ctx, peer.AddrInfo{ID: srv.ID(), Addrs: srv.Addrs()}); err != nil {
		b.Fatal(err)
	}
	s, err := cli.NewStream(ctx, srv.ID(), echoProto)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	buf := make([]byte, benchPayload)
	roundTrip(b, s, buf)
	b.ResetTimer()
	for range b.N {
		roundTrip(b, s, buf)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "roundtrips/s")
}

// BenchmarkBareNewConnPerExchange: connect, open a stream, echo 256 B,
// close the connection.
func BenchmarkBareNewConnPerExchange(b *testing.B) {
	srv, cli := bareEcho(b), bareHost(b)
	ctx := context.Background()
	ai := peer.AddrInfo{ID: srv.ID(), Addrs: srv.Addrs()}
	buf := make([]byte, benchPayload)
	b.ResetTimer()
	for range b.N {
		if err := cli.Connect(ctx, ai); err != nil {
			b.Fatal(err)
		}
		s, err := cli.NewStream(ctx, srv.ID(), echoProto)
		if err != nil {
			b.Fatal(err)
		}
		roundTrip(b, s, buf)
		if err := cli.Network().ClosePeer(srv.ID()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
}

// benchExchanges runs b.N exchanges from a to an echoing b, one at a time.
func benchExchanges(b *testing.B, opts ...handler.Option) {
	ia, ib := tu.NewIdentity(b), tu.NewIdentity(b)
	list := tu.Allowlist(b, ia, ib)
	opts = append(opts, handler.WithIdleTimeout(-1))
	a := newHandler(b, ia, list, opts...)
	srv := newHandler(b, ib, list, opts...)
	echo(b, srv)
	msg := make([]byte, benchPayload)
	to := addr(srv)
	run := func() {
		id, err := a.Request(ib.ID, to, msg)
		if err != nil {
			b.Fatal(err)
		}
		if rep := next[handler.Reply](b, a.Events()); rep.Exchange != id {
			b.Fatalf("reply %+v", rep)
		}
		if o := next[handler.Outcome](b, a.Outcomes()); !o.OK || o.Exchange != id {
			b.Fatalf("outcome %+v", o)
		}
	}
	run()
	b.ResetTimer()
	for range b.N {
		run()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
}

// BenchmarkExchangeKeptConn: request, ack, reply, ack over one connection.
func BenchmarkExchangeKeptConn(b *testing.B) {
	benchExchanges(b, handler.WithKeepConnection(true))
}

// BenchmarkExchangeDialDisconnect: each exchange dials, and the connection
// closes once it completes (the default).
func BenchmarkExchangeDialDisconnect(b *testing.B) {
	benchExchanges(b)
}

// BenchmarkP2PRequestReply is the floor under any handler built on the p2p
// node: a message and its answer through two nodes' channels, the answer
// sent as soon as the message arrives, acks flowing as usual. It is not
// one of the baselines, but it tells the handler's own cost apart
// from the node's.
func BenchmarkP2PRequestReply(b *testing.B) {
	ia, ib := tu.NewIdentity(b), tu.NewIdentity(b)
	list := tu.Allowlist(b, ia, ib)
	a, srv := tu.Node(b, ia, list), tu.Node(b, ib, list)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var id uint64
		for ev := range srv.Receiver() {
			if d, ok := ev.(p2p.Data); ok {
				id++
				srv.Sender() <- p2p.SendMsg{Peer: d.From, ID: id, Data: d.Bytes}
			}
		}
	}()
	b.Cleanup(func() {
		srv.Close()
		<-done
	})
	msg := make([]byte, benchPayload)
	dst := srv.Addrs()[0]
	run := func(i int) {
		a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: dst, ID: uint64(i + 1), Data: msg}
		for got := false; !got; {
			if _, got = (<-a.Receiver()).(p2p.Data); got {
				return
			}
		}
	}
	run(0)
	b.ResetTimer()
	for i := range b.N {
		run(i + 1)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
}
