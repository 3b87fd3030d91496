package bench

import (
	"context"
	"errors"
	"testing"
)

// BenchmarkNodeExchanges32 is the scaling workload's "p2p alone" side
// at 32 peers, for profiling beside BenchmarkHubExchanges32:
//
//	go test -run '^$' -bench NodeExchanges32 -benchtime 200000x -cpuprofile nodes.cpu ./internal/bench/
func BenchmarkNodeExchanges32(b *testing.B) {
	hub, err := newNodeExchangeHub(32)
	if err != nil {
		b.Fatal(err)
	}
	defer hub.close()
	ctx := context.Background()
	if _, err := hub.exchanges(ctx, 32, 256); err != nil {
		b.Fatal(err)
	}
	cpu0, err := ProcessCPU()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	if _, err := hub.exchanges(ctx, b.N, 256); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu1, err := ProcessCPU()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// A peer's failure reaches the hub's next exchanges: an answer the hub
// never acknowledged is not an exchange done.
func TestNodeExchangeHubReportsPeerFailure(t *testing.T) {
	hub, err := newNodeExchangeHub(1)
	if err != nil {
		t.Fatal(err)
	}
	defer hub.close()
	ctx := context.Background()
	if _, err := hub.exchanges(ctx, 3, 64); err != nil {
		t.Fatal(err)
	}
	failure := errors.New("a peer's answer failed")
	hub.fail(failure)
	if _, err := hub.exchanges(ctx, 3, 64); !errors.Is(err, failure) {
		t.Fatalf("exchanges after a peer's failure: %v, want %v", err, failure)
	}
}
