package p2p_test

import (
	"context"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/internal/bench"
)

// baselineOps is how many bare round trips each benchmark measures, in the
// same run, to report its rate as a ratio of the bare go-libp2p rate.
const baselineOps = 3000

func bareRoundTripRate(b *testing.B) float64 {
	b.Helper()
	pair, err := bench.NewBarePair()
	if err != nil {
		b.Fatal(err)
	}
	defer pair.Close()
	d, err := pair.RoundTrips(context.Background(), baselineOps, 256)
	if err != nil {
		b.Fatal(err)
	}
	return bench.Rate(baselineOps, d)
}

// BenchmarkBareStreamRoundTrip is the baseline on its own: 256 B echoed over
// one go-libp2p stream, one in flight.
func BenchmarkBareStreamRoundTrip(b *testing.B) {
	pair, err := bench.NewBarePair()
	if err != nil {
		b.Fatal(err)
	}
	defer pair.Close()
	b.ResetTimer()
	d, err := pair.RoundTrips(context.Background(), b.N, 256)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(bench.Rate(b.N, d), "msg/s")
}

func benchmarkSendAcked(b *testing.B, inflight int) {
	base := bareRoundTripRate(b)
	pair, err := bench.NewNodePair(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer pair.Close()
	b.ResetTimer()
	res, err := pair.SendAcked(context.Background(), b.N, inflight, 256)
	if err != nil {
		b.Fatal(err)
	}
	rate := bench.Rate(b.N, res.Elapsed)
	b.ReportMetric(rate, "msg/s")
	b.ReportMetric(rate/base, "x-bare")
	b.ReportMetric(float64(res.Busy)/float64(b.N), "busy/op")
}

// BenchmarkSendAcked1 sends acked 256 B messages one at a time on a warm
// connection. Target: x-bare >= 0.8.
func BenchmarkSendAcked1(b *testing.B) { benchmarkSendAcked(b, 1) }

// BenchmarkSendAcked64 keeps 64 acked messages in flight. Target: x-bare >= 2.
func BenchmarkSendAcked64(b *testing.B) { benchmarkSendAcked(b, 64) }
