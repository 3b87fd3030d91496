package p2p

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// The node's dials of one peer take turns; other peers' do not wait.
func TestDialTurns(t *testing.T) {
	var turns dialTurns
	p, q := peer.ID("p"), peer.ID("q")
	done, err := turns.take(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	other, err := turns.take(context.Background(), q)
	if err != nil {
		t.Fatalf("a dial of another peer waited: %v", err)
	}
	other()

	// While p's dial is in progress, a second one gets no turn.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := turns.take(cancelled, p); !errors.Is(err, context.Canceled) {
		t.Fatalf("a second dial of the peer took a turn: err %v", err)
	}

	// It gets one once the first returns.
	got := make(chan error, 1)
	go func() {
		next, err := turns.take(context.Background(), p)
		if err == nil {
			next()
		}
		got <- err
	}()
	done()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the second dial never got its turn")
	}
}
