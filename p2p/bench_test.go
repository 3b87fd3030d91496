package p2p_test

import (
	"context"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/internal/bench"
)

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

// benchmarkSendAcked measures acked 256 B messages on a warm connection with
// up to inflight awaiting acks, interleaved with the bare round trip in the
// same run; x-bare is the ratio of the two rates.
func benchmarkSendAcked(b *testing.B, inflight int, direct bool) {
	ctx := context.Background()
	bare, err := bench.NewBarePair()
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()
	echo, err := bare.Stream(ctx)
	if err != nil {
		b.Fatal(err)
	}
	pair, err := bench.NewNodePair(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer pair.Close()
	pair.Direct = direct
	busy := 0
	b.ResetTimer()
	ours, base, err := bench.Interleave(b.N, 1000,
		func(k int) (time.Duration, error) {
			res, err := pair.SendAcked(ctx, k, inflight, 256)
			busy += res.Busy
			return res.Elapsed, err
		},
		func(k int) (time.Duration, error) { return echo.RoundTrips(k, 256) },
	)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(bench.Rate(b.N, ours), "msg/s")
	b.ReportMetric(bench.Rate(b.N, base), "bare-msg/s")
	b.ReportMetric(base.Seconds()/ours.Seconds(), "x-bare")
	b.ReportMetric(float64(busy)/float64(b.N), "busy/op")
}

// BenchmarkSendAcked1 sends acked messages one at a time. Target: x-bare >= 0.8.
func BenchmarkSendAcked1(b *testing.B) { benchmarkSendAcked(b, 1, false) }

// BenchmarkSendAcked64 keeps 64 acked messages in flight. Target: x-bare >= 2.
func BenchmarkSendAcked64(b *testing.B) { benchmarkSendAcked(b, 64, false) }

// BenchmarkSendDirect1 is BenchmarkSendAcked1 sending with Node.SendMessage
// (Send's fast way) instead of the Sender channel.
func BenchmarkSendDirect1(b *testing.B) { benchmarkSendAcked(b, 1, true) }

// BenchmarkSendDirect64 is BenchmarkSendAcked64 sending with
// Node.SendMessage. Messages sent while others await their acks leave
// together, as through the Sender channel (Node.flushLater).
func BenchmarkSendDirect64(b *testing.B) { benchmarkSendAcked(b, 64, true) }
