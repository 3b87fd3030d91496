package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// DurableWorkload is the cost of durability: exchanges over a kept
// connection between two handlers on stores (Ours) against the same
// exchanges between two ephemeral handlers (Base), with inFlight requests
// outstanding at a time, made and answered by as many goroutines: a durable
// call waits for its disk write, and concurrent calls share one (group
// commit). Commits reports the store transactions (each one round of
// fsyncs) each side has made so far.
type DurableWorkload struct {
	Workload
	Commits func() (a, b uint64)
	Stats   func() (a, b store.Stats)
}

// ExchangeDurable sets up a DurableWorkload whose stores live under dir.
func ExchangeDurable(ctx context.Context, dir string, size, inFlight int) (*DurableWorkload, error) {
	sa, err := store.Open(filepath.Join(dir, "a"), store.Options{})
	if err != nil {
		return nil, err
	}
	sb, err := store.Open(filepath.Join(dir, "b"), store.Options{})
	if err != nil {
		sa.Close()
		return nil, err
	}
	keep := func(c *handler.Config) {
		c.KeepConnection = true
		c.MaxConcurrentPerPeer = inFlight
	}
	durable, err := newHandlerPairOn(keep, inFlight, sa, sb)
	if err != nil {
		sa.Close()
		sb.Close()
		return nil, err
	}
	ephemeral, err := newHandlerPair(keep, inFlight)
	if err != nil {
		durable.Close()
		sa.Close()
		sb.Close()
		return nil, err
	}
	w := &DurableWorkload{
		Workload: Workload{
			Ours: func(k int) (time.Duration, error) { return durable.Window(ctx, k, size, inFlight) },
			Base: func(k int) (time.Duration, error) { return ephemeral.Window(ctx, k, size, inFlight) },
			Close: func() {
				durable.Close()
				ephemeral.Close()
				sa.Close()
				sb.Close()
			},
		},
		Commits: func() (uint64, uint64) { return sa.Stats().Commits, sb.Stats().Commits },
		Stats:   func() (store.Stats, store.Stats) { return sa.Stats(), sb.Stats() },
	}
	for _, warm := range []func(int) (time.Duration, error){w.Ours, w.Base} {
		if _, err := warm(inFlight); err != nil {
			w.Close()
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	return w, nil
}

// newHandlerPairOn is NewHandlerPair with each handler on its own store; B
// answers requests as NewHandlerPair's does, and the stores record it.
func newHandlerPairOn(mutate func(*handler.Config), responders int, sa, sb *store.Store) (*HandlerPair, error) {
	stores := []*store.Store{sa, sb}
	return newHandlerPair(func(c *handler.Config) {
		mutate(c)
		c.Store, stores = stores[0], stores[1:]
	}, responders)
}

// Window times n requests of size bytes from A to B with up to inFlight
// outstanding, made by inFlight goroutines: a new one is sent as each
// Outcome comes in. Every exchange must end OK, and its Reply be read.
func (p *HandlerPair) Window(ctx context.Context, n, size, inFlight int) (time.Duration, error) {
	msg := make([]byte, size)
	to, addr := p.B.PeerID(), p.B.Addrs()[0]
	events, outcomes := p.A.Events(), p.A.Outcomes()
	slots := make(chan struct{}, inFlight) // a token per exchange outstanding
	stop := make(chan struct{})
	errc := make(chan error, inFlight)
	var issued atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	start := time.Now()
	for range inFlight {
		wg.Go(func() {
			for issued.Add(1) <= int64(n) {
				select {
				case slots <- struct{}{}:
				case <-stop:
					return
				}
				if _, err := p.A.Request(to, addr, msg); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	for ended, replies := 0, 0; ended < n || replies < n; {
		select {
		case ev, ok := <-events:
			if !ok {
				return 0, errors.New("handler closed")
			}
			if _, isReply := ev.(*handler.Reply); isReply {
				replies++
			}
		case ev, ok := <-outcomes:
			if !ok {
				return 0, errors.New("handler closed")
			}
			if o, isOutcome := ev.(*handler.Outcome); isOutcome {
				if !o.OK {
					return 0, fmt.Errorf("exchange %s: %s: %v", o.Exchange, o.Reason, o.Err)
				}
				ended++
				<-slots
			}
		case err := <-errc:
			return 0, err
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return time.Since(start), nil
}
