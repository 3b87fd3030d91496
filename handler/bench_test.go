package handler_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/internal/bench"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// The handler's benchmarks run interleaved with bare go-libp2p baselines
// (internal/bench, the same workloads `p2pnode bench` runs), so that their
// ratio, measured in one run on one machine, is what gets compared:
//
//	go test -run '^$' -bench . -benchtime 2s ./handler/
//
// An exchange is two acked messages (request and reply); over a kept
// connection lazy acks make it one write each way, like one bare round
// trip, plus the handlers' goroutine handoffs. With dialing, one connection
// setup dominates.

const benchPayload = 256

// runWorkload runs b.N operations of w, in alternating chunks of ours and
// the baseline, and reports both rates and their ratio (x-bare).
func runWorkload(b *testing.B, w *bench.Workload, chunk int, unit string) {
	b.Cleanup(w.Close)
	b.ResetTimer()
	ours, base, err := bench.Interleave(b.N, chunk, w.Ours, w.Base)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(bench.Rate(b.N, ours), unit)
	b.ReportMetric(bench.Rate(b.N, base), "bare-"+unit)
	b.ReportMetric(base.Seconds()/ours.Seconds(), "x-bare")
}

// BenchmarkExchangeKeptConn: request, ack, reply, ack over one connection,
// against one bare echo round trip on a stream.
func BenchmarkExchangeKeptConn(b *testing.B) {
	w, err := bench.ExchangeKeptConn(context.Background(), benchPayload)
	if err != nil {
		b.Fatal(err)
	}
	runWorkload(b, w, 200, "exchanges/s")
}

// BenchmarkExchangeDialDisconnect: each exchange dials, and the connection
// closes once it completes (the default), against a bare connect, stream,
// echo and close. Target: x-bare >= 0.9.
func BenchmarkExchangeDialDisconnect(b *testing.B) {
	w, err := bench.ExchangeDialDisconnect(context.Background(), benchPayload)
	if err != nil {
		b.Fatal(err)
	}
	runWorkload(b, w, 20, "exchanges/s")
}

// BenchmarkP2PRequestReply is the floor under any handler built on the p2p
// node: a message and its answer through two nodes' channels, the answer
// sent as soon as the message arrives, both with lazy acks as the handler
// sends them over a kept connection. It is not one of the issue's
// baselines, but it tells the handler's own cost apart from the node's.
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
				_ = srv.Send(context.Background(), p2p.SendMsg{Peer: d.From, ID: id, Data: d.Bytes, LazyAck: true})
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
		_ = a.Send(context.Background(), p2p.SendMsg{Peer: ib.ID, Addr: dst, ID: uint64(i + 1), Data: msg, LazyAck: true})
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

// BenchmarkExchangeDurable: exchanges over a kept connection between two
// handlers on stores, against the same between two ephemeral handlers
// (x-ephemeral), with 1 and 64 requests in flight; commits/exchange counts
// the store transactions (one round of fsyncs each) per side. Targets: 64
// in flight durable >= 0.5x ephemeral; 1 in flight at most a couple of
// fsync rounds per side.
func BenchmarkExchangeDurable(b *testing.B) {
	for _, inFlight := range []int{1, 64} {
		b.Run(fmt.Sprintf("inflight=%d", inFlight), func(b *testing.B) {
			w, err := bench.ExchangeDurable(context.Background(), b.TempDir(), benchPayload, inFlight)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(w.Close)
			a0, b0 := w.Commits()
			b.ResetTimer()
			ours, base, err := bench.Interleave(b.N, max(200, 4*inFlight), w.Ours, w.Base)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			a1, b1 := w.Commits()
			b.ReportMetric(bench.Rate(b.N, ours), "exchanges/s")
			b.ReportMetric(bench.Rate(b.N, base), "ephemeral-exchanges/s")
			b.ReportMetric(base.Seconds()/ours.Seconds(), "x-ephemeral")
			b.ReportMetric(float64(a1-a0)/float64(b.N), "requester-commits/exchange")
			b.ReportMetric(float64(b1-b0)/float64(b.N), "responder-commits/exchange")
		})
	}
}
