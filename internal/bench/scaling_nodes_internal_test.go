package bench

import (
	"context"
	"errors"
	"testing"
)

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
