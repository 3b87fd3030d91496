package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// Workload is one measurement of ours against its bare go-libp2p baseline,
// set up and ready to run: Ours and Base each time k operations, and are
// meant for Interleave. Close stops everything the workload started.
type Workload struct {
	Ours  func(k int) (time.Duration, error)
	Base  func(k int) (time.Duration, error)
	Close func()
}

// ExchangeKeptConn is a request answered by a reply, one at a time, over a
// connection both handlers keep, against a bare echo round trip on one
// stream. An exchange is two acknowledged messages (request and reply); with
// lazy acks the request's ack leaves with the reply and the reply's with the
// next request, so its wire cost is one bare round trip, and what the ratio
// measures beyond that is the two handlers' and applications' handoffs.
func ExchangeKeptConn(ctx context.Context, size int) (*Workload, error) {
	return exchangeWorkload(ctx, size, true)
}

// ExchangeDialDisconnect is a request answered by a reply where each
// exchange dials a fresh connection and closes it once done (the handler's
// default), against a bare dial, stream, echo and close per exchange.
func ExchangeDialDisconnect(ctx context.Context, size int) (*Workload, error) {
	return exchangeWorkload(ctx, size, false)
}

func exchangeWorkload(ctx context.Context, size int, keep bool) (*Workload, error) {
	hp, err := NewHandlerPair(func(c *handler.Config) { c.KeepConnection = keep })
	if err != nil {
		return nil, err
	}
	bare, err := NewBarePair()
	if err != nil {
		hp.Close()
		return nil, err
	}
	w := &Workload{
		Ours:  func(k int) (time.Duration, error) { return hp.Exchanges(ctx, k, size) },
		Close: func() { hp.Close(); bare.Close() },
	}
	if keep {
		echo, err := bare.Stream(ctx)
		if err != nil {
			w.Close()
			return nil, err
		}
		w.Base = func(k int) (time.Duration, error) { return echo.RoundTrips(k, size) }
	} else {
		w.Base = func(k int) (time.Duration, error) { return bare.NewConnExchanges(ctx, k, size) }
	}
	// One exchange each way before timing: the first connection also
	// runs identify, and a kept one stays for the timed work.
	if _, err := w.Ours(1); err != nil {
		w.Close()
		return nil, fmt.Errorf("warm-up exchange: %w", err)
	}
	if _, err := w.Base(1); err != nil {
		w.Close()
		return nil, fmt.Errorf("warm-up bare exchange: %w", err)
	}
	return w, nil
}

// HandlerPair is two exchange handlers on loopback that allowlist each
// other. B answers every request with its payload, from a goroutine that
// Close stops, as a prompt application would.
type HandlerPair struct {
	A, B *handler.Handler
	wg   sync.WaitGroup
}

// NewHandlerPair starts the two handlers with ed25519 keys: the baseline's
// key type (BarePair), so that a ratio measures the handler and not the
// signature scheme of the handshake. mutate adjusts both configurations.
// Connections stay open however long they sit idle between chunks of work.
func NewHandlerPair(mutate func(*handler.Config)) (*HandlerPair, error) {
	return newHandlerPair(mutate, 1)
}

// newHandlerPair is NewHandlerPair with responders goroutines answering
// B's requests: an application that answers concurrently.
func newHandlerPair(mutate func(*handler.Config), responders int) (*HandlerPair, error) {
	return newKeyedHandlerPair(p2p.Ed25519, mutate, responders)
}

// NewHandlerPairOfType is NewHandlerPair with keys of type t: secp256k1,
// p2pnode's default, costs the handshake more than ed25519.
func NewHandlerPairOfType(t p2p.KeyType, mutate func(*handler.Config)) (*HandlerPair, error) {
	return newKeyedHandlerPair(t, mutate, 1)
}

func newKeyedHandlerPair(t p2p.KeyType, mutate func(*handler.Config), responders int) (*HandlerPair, error) {
	ca, cb, err := pairConfigs(t)
	if err != nil {
		return nil, err
	}
	start := func(k p2p.Config) (*handler.Handler, error) {
		c := handler.Config{Node: k, IdleTimeout: -1}
		if mutate != nil {
			mutate(&c)
		}
		return handler.NewWithConfig(c)
	}
	a, err := start(ca)
	if err != nil {
		return nil, err
	}
	b, err := start(cb)
	if err != nil {
		a.Close()
		return nil, err
	}
	p := &HandlerPair{A: a, B: b}
	for range responders {
		p.wg.Go(func() { answer(b) })
	}
	// B's outcomes are read so that none waits in its queue.
	p.wg.Go(func() {
		for range b.Outcomes() {
		}
	})
	return p, nil
}

// Close stops both handlers and B's goroutines.
func (p *HandlerPair) Close() {
	p.A.Close()
	p.B.Close()
	p.wg.Wait()
}

// Exchanges times n requests of size bytes from A to B, one at a time: each
// is sent once the previous one's reply and outcome are in. Every exchange
// must end OK.
func (p *HandlerPair) Exchanges(ctx context.Context, n, size int) (time.Duration, error) {
	msg := make([]byte, size)
	to, addr := p.B.PeerID(), p.B.Addrs()[0]
	start := time.Now()
	for range n {
		id, err := p.A.Request(to, addr, msg)
		if err != nil {
			return 0, err
		}
		if err := awaitExchange(ctx, p.A, id); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// awaitExchange waits for the Reply and the OK Outcome of exchange id.
func awaitExchange(ctx context.Context, h *handler.Handler, id handler.ExchangeID) error {
	events, outcomes := h.Events(), h.Outcomes()
	for replied, ended := false, false; !replied || !ended; {
		select {
		case ev, ok := <-events:
			if !ok {
				return errors.New("handler closed")
			}
			if r, ok := ev.(*handler.Reply); ok && r.Exchange == id {
				replied = true
			}
		case ev, ok := <-outcomes:
			if !ok {
				return errors.New("handler closed")
			}
			o, isOutcome := ev.(*handler.Outcome)
			if !isOutcome || o.Exchange != id {
				continue
			}
			if !o.OK {
				return fmt.Errorf("exchange %s: %s: %v", id, o.Reason, o.Err)
			}
			ended = true
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
