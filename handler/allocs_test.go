package handler_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/internal/bench"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// maxExchangeAllocs bounds the heap allocations of one exchange over a kept
// connection, both ends together (request, its delivery, the reply, its
// delivery, both acks and both Outcomes). Measured: 8, the target.
// Of those, 4 are Noise's (one nonce per encrypted write or read, as in a
// bare round trip), 2 the payloads handed to the applications and 2 the
// exchanges' state, in which the events handed to the applications live;
// the envelopes come from a pool. handler/doc.go keeps the account. The
// bound is one more than measured, so that the occasional allocation of a
// background goroutine (yamux's keepalive, a GC) does not fail the test.
const maxExchangeAllocs int = 9

// TestExchangeAllocations guards that count: a change that adds an
// allocation to the exchange path fails here, not in a profile months later.
func TestExchangeAllocations(t *testing.T) {
	hp, err := bench.NewHandlerPair(func(c *handler.Config) {
		c.KeepConnection = true
		// However slow the machine, the request's ack waits for the reply
		// to carry it, as it does on an idle one: the count is the design's,
		// not the scheduler's.
		c.Node.AckDelay = p2p.MaxAckDelay
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hp.Close)
	ctx := context.Background()
	// Warm up: the connection, its streams, and every map and slice on the
	// path at its working size.
	if _, err := hp.Exchanges(ctx, 100, benchPayload); err != nil {
		t.Fatal(err)
	}
	// Not testing.AllocsPerRun: it runs at GOMAXPROCS 1, where the two
	// ends take turns differently (acks leave in writes of their own) from
	// how they run anywhere else.
	const n = 500
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := hp.Exchanges(ctx, n, benchPayload); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	allocs := float64(after.Mallocs-before.Mallocs) / n
	t.Logf("%.2f allocations per exchange, both ends", allocs)
	if limit := maxExchangeAllocs + raceAllocs; allocs > float64(limit) {
		t.Errorf("%.2f allocations per exchange, the most allowed is %d", allocs, limit)
	}
}
