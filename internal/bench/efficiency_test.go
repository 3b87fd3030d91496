package bench_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/internal/bench"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// The issue-13 workloads (peer scaling, gRPC) run against their baselines
// and stop every goroutine they started. No speed is asserted.
func TestEfficiencyWorkloads(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, setup := range map[string]func() (*bench.Workload, error){
		"scaling 3":     func() (*bench.Workload, error) { return bench.ExchangeScaling(ctx, 3, 64) },
		"scaling 3 p2p": func() (*bench.Workload, error) { return bench.NodeExchangeScaling(ctx, 3, 64) },
		"grpc kept 1":   func() (*bench.Workload, error) { return bench.GRPCKeptConn(ctx, 64, 1) },
		"grpc kept 4":   func() (*bench.Workload, error) { return bench.GRPCKeptConn(ctx, 64, 4) },
		"grpc new conn": func() (*bench.Workload, error) { return bench.GRPCNewConn(ctx, 64) },
	} {
		w, err := setup()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ours, base, err := bench.Interleave(8, 4, w.Ours, w.Base)
		w.Close()
		if err != nil || ours < 0 || base < 0 {
			t.Fatalf("%s: %v, %v, %v", name, ours, base, err)
		}
	}
}

// Idle connections of every kind are measured, used either way, and cost
// something.
func TestIdleConnMemory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, kind := range []bench.IdleKind{bench.IdleExchange, bench.IdleExchangeQuiet, bench.IdleAckedSend, bench.IdleBareEcho} {
		for _, use := range []bench.IdleUse{bench.OneAtATime, bench.AllAtOnce} {
			m, err := bench.IdleConnMemory(ctx, kind, use, 3, 64)
			if err != nil {
				t.Fatalf("kind %d, use %d: %v", kind, use, err)
			}
			if m.Goroutines <= 0 {
				t.Errorf("kind %d, use %d: %+v: connections that hold no goroutine", kind, use, m)
			}
		}
	}
	if _, err := bench.IdleConnMemory(ctx, bench.IdleBareEcho, bench.OneAtATime, 0, 64); err == nil {
		t.Error("no error for zero connections")
	}
	if _, err := bench.IdleConnMemory(ctx, bench.IdleBareEcho, bench.OneAtATime, bench.MaxIdleConns+1, 64); err == nil {
		t.Error("no error for more than MaxIdleConns connections")
	}
	if _, err := bench.IdleConnMemory(ctx, bench.IdleBareEcho, bench.IdleUse(7), 1, 64); err == nil {
		t.Error("no error for an unknown use")
	}
}

// BenchmarkExchangeDialDisconnectOurs is an exchange that dials and closes
// its own connection, with no baseline beside it: the workload to profile
// for where a dialed exchange's CPU goes (docs/performance.md). Its keys
// are ed25519, the baseline's; BenchmarkExchangeDialDisconnectOursSecp256k1
// uses p2pnode's default key type.
//
//	go test -run '^$' -bench ExchangeDialDisconnectOurs -benchtime 1500x -cpuprofile cpu.out ./internal/bench/
//	go tool pprof -top cpu.out
func BenchmarkExchangeDialDisconnectOurs(b *testing.B) {
	benchmarkDialExchange(b, p2p.Ed25519)
}

// BenchmarkExchangeDialDisconnectOursSecp256k1 is
// BenchmarkExchangeDialDisconnectOurs with secp256k1 keys.
func BenchmarkExchangeDialDisconnectOursSecp256k1(b *testing.B) {
	benchmarkDialExchange(b, p2p.Secp256k1)
}

func benchmarkDialExchange(b *testing.B, keys p2p.KeyType) {
	hp, err := bench.NewHandlerPairOfType(keys, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer hp.Close()
	ctx := context.Background()
	if _, err := hp.Exchanges(ctx, 1, 256); err != nil {
		b.Fatal(err)
	}
	cpu0, err := bench.ProcessCPU()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	if _, err := hp.Exchanges(ctx, b.N, 256); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu1, err := bench.ProcessCPU()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// BenchmarkBareDialEchoClose is the bare go-libp2p counterpart of
// BenchmarkExchangeDialDisconnectOurs, to profile beside it: connect,
// stream, echo, close.
func BenchmarkBareDialEchoClose(b *testing.B) {
	bp, err := bench.NewBarePair()
	if err != nil {
		b.Fatal(err)
	}
	defer bp.Close()
	ctx := context.Background()
	if _, err := bp.NewConnExchanges(ctx, 1, 256); err != nil {
		b.Fatal(err)
	}
	cpu0, err := bench.ProcessCPU()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	if _, err := bp.NewConnExchanges(ctx, b.N, 256); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu1, err := bench.ProcessCPU()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// BenchmarkHubExchanges32 is the scaling workload's side of ours at 32
// peers, alone, to profile; BenchmarkBareRoundTrips32 is its baseline's,
// and the ...1 pair the same at one peer (docs/performance.md, Stop 25):
//
//	go test -run '^$' -bench HubExchanges32 -benchtime 200000x -cpuprofile hub.cpu ./internal/bench/
//	go test -run '^$' -bench BareRoundTrips32 -benchtime 200000x -cpuprofile bare.cpu ./internal/bench/
//
// The hub's samples and its peers' are labeled apart (Stop 39):
//
//	go tool pprof -tags hub.cpu
//	go tool pprof -tagfocus side=peer -top hub.cpu
func BenchmarkHubExchanges32(b *testing.B) { hubExchanges(b, 32) }

// BenchmarkHubExchanges1 is BenchmarkHubExchanges32 at one peer.
func BenchmarkHubExchanges1(b *testing.B) { hubExchanges(b, 1) }

// BenchmarkNodeExchanges32 is the scaling workload's "p2p alone" side at
// 32 peers, the same messages between p2p nodes without the handlers, to
// profile beside BenchmarkHubExchanges32. (Its bare hosts are set up too,
// and sit idle.)
func BenchmarkNodeExchanges32(b *testing.B) {
	oursPerOp(b, func() (*bench.Workload, error) { return bench.NodeExchangeScaling(context.Background(), 32, 256) })
}

// BenchmarkKeptConn64 is `bench grpc`'s kept connection with 64 in
// flight, our side alone: exchanges between two handlers that keep their
// connection, 64 outstanding. BenchmarkKeptConn64Bare is its reference
// ("libp2p alone"): echo round trips on 64 streams of one bare go-libp2p
// connection. (The gRPC pair each sets up sits idle.) To profile the two
// side by side (docs/performance.md, Stop 33):
//
//	go test -run '^$' -bench 'KeptConn64$' -benchtime 200000x -cpuprofile kept.cpu ./internal/bench/
//	go test -run '^$' -bench 'KeptConn64Bare$' -benchtime 200000x -cpuprofile bare.cpu ./internal/bench/
func BenchmarkKeptConn64(b *testing.B) {
	keptConn(b, bench.GRPCKeptConn)
}

// BenchmarkKeptConn64Node is BenchmarkKeptConn64 with p2p nodes in place
// of the handlers: the same messages and acks, without the handlers.
func BenchmarkKeptConn64Node(b *testing.B) {
	keptConn(b, bench.NodeKeptConn)
}

// BenchmarkKeptConn64Bare is BenchmarkKeptConn64's go-libp2p reference.
func BenchmarkKeptConn64Bare(b *testing.B) {
	keptConn(b, bench.GRPCBareKeptConn)
}

func keptConn(b *testing.B, setup func(context.Context, int, int) (*bench.Workload, error)) {
	oursPerOp(b, func() (*bench.Workload, error) { return setup(context.Background(), 256, 64) })
}

// oursPerOp sets up a workload and reports the CPU per operation of its
// own side alone (Workload.Ours; the baseline it holds sits idle).
func oursPerOp(b *testing.B, setup func() (*bench.Workload, error)) {
	w, err := setup()
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	cpuPerOp(b, func() error {
		_, err := w.Ours(b.N)
		return err
	})
}

// BenchmarkBareRoundTrips32 is the scaling workload's baseline at 32 peers.
func BenchmarkBareRoundTrips32(b *testing.B) { bareRoundTrips(b, 32) }

// BenchmarkBareRoundTrips1 is BenchmarkBareRoundTrips32 at one peer.
func BenchmarkBareRoundTrips1(b *testing.B) { bareRoundTrips(b, 1) }

func hubExchanges(b *testing.B, peers int) {
	hub, err := bench.NewHandlerHub(peers, func(c *handler.Config) { c.KeepConnection = true })
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Close()
	ctx := context.Background()
	if _, err := hub.Exchanges(ctx, peers, 256); err != nil {
		b.Fatal(err)
	}
	cpuPerOp(b, func() error {
		_, err := hub.Exchanges(ctx, b.N, 256)
		return err
	})
}

func bareRoundTrips(b *testing.B, peers int) {
	hub, err := bench.NewBareHub(peers)
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Close()
	streams, err := hub.Streams(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := bench.RoundTripsOn(streams, peers, 256); err != nil {
		b.Fatal(err)
	}
	cpuPerOp(b, func() error {
		_, err := bench.RoundTripsOn(streams, b.N, 256)
		return err
	})
}

// cpuPerOp times run, which makes b.N operations, and reports the process's
// CPU per operation beside the wall time.
func cpuPerOp(b *testing.B, run func() error) {
	cpu0, err := bench.ProcessCPU()
	if err != nil {
		b.Fatal(err)
	}
	w0, counted := writeCalls()
	b.ResetTimer()
	if err := run(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu1, err := bench.ProcessCPU()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	if w1, ok := writeCalls(); counted && ok {
		b.ReportMetric(float64(w1-w0)/float64(b.N), "writes/op")
	}
}

// writeCalls is the process's count of write system calls so far (syscw in
// /proc/self/io), where Linux keeps one: each carries one Noise message.
func writeCalls() (int64, bool) {
	io, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(io)) {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// The round-trip workload runs and stops everything it started; no speed
// is asserted.
func TestDialedRoundTrips(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ours, bare, err := bench.DialedRoundTrips(ctx, 2, time.Millisecond)
	if err != nil || ours <= 0 || bare <= 0 {
		t.Fatalf("%v, %v, %v", ours, bare, err)
	}
}

// BenchmarkDialedRoundTrips counts the round trips a dialed exchange waits
// for (the handler's default), against go-libp2p's connect and echo,
// through a proxy that delays each direction by 5 ms (loopback has no
// delay to speak of). The proxy's own TCP handshake is not delayed: on a
// real network add one round trip to both.
//
//	go test -run '^$' -bench DialedRoundTrips -benchtime 20x ./internal/bench/
func BenchmarkDialedRoundTrips(b *testing.B) {
	ours, bare, err := bench.DialedRoundTrips(context.Background(), b.N, 5*time.Millisecond)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(ours, "round-trips/exchange")
	b.ReportMetric(bare, "bare-round-trips/exchange")
}
