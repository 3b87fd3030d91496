package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// ExchangeScaling is the CPU cost of exchanges as the number of peers
// grows: one handler keeps a connection to each of peers others and has
// one exchange in flight with every one of them at once, against a bare
// host doing echo round trips on one stream to each of as many bare hosts.
// Ours and Base report the process CPU time their operations used
// (CPUCost), not wall-clock time.
func ExchangeScaling(ctx context.Context, peers, size int) (*Workload, error) {
	hub, err := NewHandlerHub(peers, func(c *handler.Config) { c.KeepConnection = true })
	if err != nil {
		return nil, err
	}
	return againstBareHub(ctx, peers, size, hub.Exchanges, hub.Close)
}

// againstBareHub is the scaling workload of ours (exchanges of size bytes
// with peers, one in flight each; closeOurs stops what it runs on) against
// echo round trips between bare hosts, as many. Both report their CPU
// time.
func againstBareHub(ctx context.Context, peers, size int,
	ours func(ctx context.Context, n, size int) (time.Duration, error), closeOurs func()) (*Workload, error) {
	bare, err := NewBareHub(peers)
	if err != nil {
		closeOurs()
		return nil, err
	}
	streams, err := bare.Streams(ctx)
	if err != nil {
		closeOurs()
		bare.Close()
		return nil, err
	}
	w := &Workload{
		Ours:  CPUCost(func(k int) (time.Duration, error) { return ours(ctx, k, size) }),
		Base:  CPUCost(func(k int) (time.Duration, error) { return RoundTripsOn(streams, k, size) }),
		Close: func() { closeOurs(); bare.Close() },
	}
	// One exchange with every peer before timing: the connections and
	// their identify are set up, not measured.
	if _, err := w.Ours(peers); err != nil {
		w.Close()
		return nil, fmt.Errorf("warm-up exchanges: %w", err)
	}
	if _, err := w.Base(peers); err != nil {
		w.Close()
		return nil, fmt.Errorf("warm-up round trips: %w", err)
	}
	return w, nil
}

// HandlerHub is one exchange handler (Hub) and Peers handlers, all on
// loopback and allowlisting one another. Each of Peers answers every
// request with its payload, from a goroutine that Close stops.
type HandlerHub struct {
	Hub   *handler.Handler
	Peers []*handler.Handler
	wg    sync.WaitGroup

	served     atomic.Int64  // Outcomes the peers have had, all told
	servedMore chan struct{} // a token when served grows
	to         []target      // Peers' IDs and addresses, read once
}

// target is where a request goes: read once, because Addrs costs a few
// microseconds, which the timed loop would otherwise charge to the handler.
type target struct {
	id   peer.ID
	addr ma.Multiaddr
}

// NewHandlerHub starts the hub and n peers with ed25519 keys (the
// baseline's key type); mutate adjusts every configuration. Connections
// stay open however long they sit idle.
func NewHandlerHub(n int, mutate func(*handler.Config)) (*HandlerHub, error) {
	if n < 1 {
		return nil, fmt.Errorf("a hub needs at least one peer (got %d)", n)
	}
	cs, err := groupConfigs(p2p.Ed25519, n+1)
	if err != nil {
		return nil, err
	}
	hs := make([]*handler.Handler, 0, n+1)
	closeAll := func() {
		for _, h := range hs {
			h.Close()
		}
	}
	for _, k := range cs {
		c := handler.Config{Node: k, IdleTimeout: -1}
		if mutate != nil {
			mutate(&c)
		}
		var h *handler.Handler
		side := sidePeer
		if len(hs) == 0 {
			side = sideHub
		}
		onSide(side, func() { h, err = handler.NewWithConfig(c) })
		if err != nil {
			closeAll()
			return nil, err
		}
		hs = append(hs, h)
	}
	hub := &HandlerHub{Hub: hs[0], Peers: hs[1:], servedMore: make(chan struct{}, 1)}
	for _, p := range hub.Peers {
		hub.to = append(hub.to, target{p.PeerID(), p.Addrs()[0]})
		onSide(sidePeer, func() {
			hub.wg.Go(func() { answer(p) })
			hub.wg.Go(func() {
				for range p.Outcomes() {
					hub.served.Add(1)
					select {
					case hub.servedMore <- struct{}{}:
					default: // a token is already waiting
					}
				}
			})
		})
	}
	return hub, nil
}

// The profiler label "side" tells the hub's work from its peers' in a CPU
// profile of a HandlerHub (go tool pprof -tags, -tagfocus side=peer): every
// goroutine a handler starts, and those its connections start, inherit
// the label of the goroutine that started them.
const (
	sideHub  = "hub"
	sidePeer = "peer"
)

// onSide runs f with the calling goroutine labeled side.
func onSide(side string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("side", side), func(context.Context) { f() })
}

// AwaitServed waits until the peers have had n Outcomes in all (each of
// their exchanges ends in one, once the hub has acknowledged the reply).
func (h *HandlerHub) AwaitServed(ctx context.Context, n int) error {
	for h.served.Load() < int64(n) {
		select {
		case <-h.servedMore:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d exchanges ended at the peers: %w", h.served.Load(), n, ctx.Err())
		}
	}
	return nil
}

// answer replies to every request h receives with its payload, until h
// closes.
func answer(h *handler.Handler) {
	for ev := range h.Events() {
		if r, ok := ev.(*handler.Request); ok {
			_ = h.Response(r.From, r.Exchange, r.Data)
		}
	}
}

// Close stops every handler and the peers' goroutines.
func (h *HandlerHub) Close() {
	h.Hub.Close()
	for _, p := range h.Peers {
		p.Close()
	}
	h.wg.Wait()
}

// Exchanges makes n requests of size bytes from the hub, spread over its
// peers in turn, with one in flight per peer: a peer's next request leaves
// when its previous one has ended. Every exchange must end OK and its Reply
// be read. It returns the wall-clock time taken.
func (h *HandlerHub) Exchanges(ctx context.Context, n, size int) (took time.Duration, err error) {
	// The hub's application is this loop: labeled, it counts as the hub's.
	onSide(sideHub, func() { took, err = h.exchanges(ctx, h.to, n, size) })
	return took, err
}

// exchanges is Exchanges with the peers of to only.
func (h *HandlerHub) exchanges(ctx context.Context, to []target, n, size int) (time.Duration, error) {
	msg := make([]byte, size)
	events, outcomes := h.Hub.Events(), h.Hub.Outcomes()
	owner := make(map[handler.ExchangeID]int, len(to)) // exchange -> index of its peer
	issued := 0
	issue := func(i int) error {
		id, err := h.Hub.Request(to[i].id, to[i].addr, msg)
		if err != nil {
			return err
		}
		owner[id] = i
		issued++
		return nil
	}
	start := time.Now()
	for i := range min(n, len(to)) {
		if err := issue(i); err != nil {
			return 0, err
		}
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
			o, isOutcome := ev.(*handler.Outcome)
			if !isOutcome {
				continue
			}
			if !o.OK {
				return 0, fmt.Errorf("exchange %s: %s: %v", o.Exchange, o.Reason, o.Err)
			}
			ended++
			i, known := owner[o.Exchange]
			if !known {
				return 0, fmt.Errorf("outcome of an exchange never requested: %s", o.Exchange)
			}
			delete(owner, o.Exchange)
			if issued < n {
				if err := issue(i); err != nil {
					return 0, err
				}
			}
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return time.Since(start), nil
}

// BareHub is one plain go-libp2p host (Client) and n others that echo what
// they read (Servers), configured as BarePair's.
type BareHub struct {
	Client  host.Host
	Servers []host.Host
}

// NewBareHub starts the client and n echoing hosts.
func NewBareHub(n int) (*BareHub, error) {
	c, err := bareHost()
	if err != nil {
		return nil, err
	}
	h := &BareHub{Client: c}
	for range n {
		s, err := bareHost()
		if err != nil {
			h.Close()
			return nil, err
		}
		s.SetStreamHandler(echoProtocol, echo)
		h.Servers = append(h.Servers, s)
	}
	return h, nil
}

// Close stops every host.
func (h *BareHub) Close() {
	h.Client.Close()
	for _, s := range h.Servers {
		s.Close()
	}
}

// Streams connects the client to every server and opens one echo stream
// to each.
func (h *BareHub) Streams(ctx context.Context) ([]*EchoStream, error) {
	out := make([]*EchoStream, 0, len(h.Servers))
	for _, s := range h.Servers {
		e, err := openEcho(ctx, h.Client, peer.AddrInfo{ID: s.ID(), Addrs: s.Addrs()})
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// RoundTripsOn makes n echo round trips of size bytes spread evenly over
// streams, all streams at once and one in flight on each, and returns the
// wall-clock time taken.
func RoundTripsOn(streams []*EchoStream, n, size int) (time.Duration, error) {
	var wg sync.WaitGroup
	errs := make([]error, len(streams))
	start := time.Now()
	for i, e := range streams {
		k := n / len(streams)
		if i < n%len(streams) {
			k++
		}
		if k == 0 {
			continue
		}
		wg.Go(func() { _, errs[i] = e.RoundTrips(k, size) })
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}
