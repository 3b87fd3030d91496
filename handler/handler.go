package handler

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/internal/outbox"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// maxQueuedAlerts caps the events that are not essential (errors, alerts,
// responders' outcomes) waiting for an application that does not read them.
const maxQueuedAlerts = 1024

// Handler is a running Multi-Exchange Handler: a p2p node and the exchanges
// it carries. Create it with New, use its methods and channels from any
// goroutine, and stop it with Close.
type Handler struct {
	cfg     Config
	log     *zap.Logger
	node    *p2p.Node
	metrics *metrics // nil: Config.Metrics unset
	self    peer.ID
	pkh     string

	lastAddr addrCache // Request's last address, split

	cmds     chan any           // shutdown and test waits, to the loop
	resolved chan resolveResult // Resolver answers, to the loop
	wake     chan struct{}      // an API call left the loop something to check
	bell     chan struct{}      // deliveries wait in the node's channel (take.go)
	// flushBell: an API call left its message buffered for the loop to
	// flush (endCall).
	flushBell chan struct{}
	known     chan struct{} // closed: the ready of a verdict given at once (accept)

	events   *outbox.Outbox[Event] // Request, Reply, Message
	outcomes *outbox.Outbox[Event] // Outcome, Error
	prio     *outbox.Outbox[Event] // Dropped, ConnectionLimit

	ctx      context.Context // cancelled when the loop ends
	cancel   context.CancelFunc
	wg       sync.WaitGroup // Resolver goroutines
	closing  atomic.Bool    // Close was called: no new exchanges
	pending  pending        // requests the application may answer
	loopDone chan struct{}  // the loop ended and everything is torn down
	closeErr error          // the node's, set before loopDone is closed

	// held counts the requests received and not yet ended (every peer's
	// inbound exchanges), and heldBytes what every peer's hold counts
	// (hold): changed under mu and read without it, so that accept takes
	// mu for a peer's inbox bounds only when some peer can be at one.
	held      atomic.Int64
	heldBytes atomic.Int64

	// calls counts the API calls in apply, waiting for mu or holding it.
	// The messages a call sends stay buffered (p2p.SendMsg.Defer) while
	// another call waits to follow it, so that the calls of several
	// goroutines leave in one write; the last one flushes (endCall).
	calls atomic.Int32

	// stopWatchAL ends the subscription to the allowlist's changes.
	stopWatchAL func()

	// mu guards everything below: the exchanges' and peers' state machine.
	// The loop holds it while it handles one input (a node event, a timer,
	// a Resolver answer); API calls hold it to apply themselves at once
	// (post) instead of handing themselves to the loop and waiting for it
	// to wake.
	mu       sync.Mutex
	running  bool // the loop has begun: readers may apply deliveries (take.go)
	exited   bool // the loop has ended: nothing may change any more
	peers    map[peer.ID]*peerState
	inflight map[uint64]*exchange // p2p message ID -> the exchange that sent it
	lastMsg  uint64
	active   int // exchanges started (dialed or received) and not ended
	timers   *timers
	seen     *dedupe // requests and messages received, per peer
	done     *dedupe // own exchanges completed, per peer
	addrs    map[peer.ID]ma.Multiaddr
	resolver Resolver
	paused   bool            // not reading the node's Receiver: the app is behind
	stopping bool            // shutting down: no exchange starts
	deadline <-chan struct{} // the shutdown's deadline
	waits    []stateWait     // tests waiting for exchange states
	dur      durableState    // with a Store (durable.go)
	// lastEnded is when each peer's last exchange ended (Snapshot).
	lastEnded map[peer.ID]time.Time
	// inCall: an API call's change is being applied (apply), whose sends
	// transmit defers; deferred counts those not flushed yet. alongside:
	// one of them went to a peer with another of our exchanges out
	// (endCall).
	inCall    bool
	deferred  int
	alongside bool

	doneMu sync.Mutex // guards dur.done, which store callbacks fill
	// deadMu serializes RetryDeadLetters and DropDeadLetters, which read
	// the dead letters and then change them.
	deadMu sync.Mutex
}

// New starts a handler listening on listen (nil: a free loopback port) with
// identity key, admitting the peers of list. opts adjust the defaults of
// Config.
func New(listen ma.Multiaddr, key crypto.PrivKey, list *allowlist.List, opts ...Option) (*Handler, error) {
	cfg := Config{Node: p2p.Config{Key: key, Allowlist: list}}
	if listen != nil {
		cfg.Node.ListenAddrs = []ma.Multiaddr{listen}
	}
	for _, o := range opts {
		o(&cfg)
	}
	return NewWithConfig(cfg)
}

// NewWithConfig starts a handler from a complete Config.
func NewWithConfig(cfg Config) (*Handler, error) {
	h, err := build(cfg)
	if err != nil {
		return nil, err
	}
	h.stopWatchAL = cfg.Node.Allowlist.OnChange(h.allowlistChanged)
	go h.run()
	return h, nil
}

// build makes a handler and its node, without starting its loop. With a
// store, it takes over what the store holds (resume).
func build(cfg Config) (*Handler, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	// Registered before the node starts, so that a registry refusing them
	// fails New without a node to stop.
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Handler{
		cfg:       cfg,
		metrics:   m,
		log:       cfg.Logger,
		cmds:      make(chan any),
		wake:      make(chan struct{}, 1),
		bell:      make(chan struct{}, 1),
		flushBell: make(chan struct{}, 1),
		resolved:  make(chan resolveResult),
		events:    outbox.New(cfg.EventBuffer, outbox.Options[Event]{Limit: cfg.MaxBacklog, LowWater: cfg.MaxBacklog / 2}),
		outcomes:  outbox.New(cfg.EventBuffer, outbox.Options[Event]{Limit: maxQueuedAlerts, Merge: mergeErrors}),
		prio:      outbox.New(cfg.EventBuffer, outbox.Options[Event]{Limit: maxQueuedAlerts, Merge: mergeDropped}),
		ctx:       ctx,
		cancel:    cancel,
		loopDone:  make(chan struct{}),
		peers:     make(map[peer.ID]*peerState),
		inflight:  make(map[uint64]*exchange),
		seen:      newDedupe(cfg.DedupeTTL, cfg.DedupePerPeer, false),
		done:      newDedupe(cfg.DedupeTTL, cfg.DedupePerPeer, true),
		addrs:     make(map[peer.ID]ma.Multiaddr),
		resolver:  cfg.Resolver,
		dur:       newDurableState(),
		known:     make(chan struct{}),
	}
	close(h.known)
	h.timers = newTimers(h.exchangeDue)
	if h.durable() {
		h.seen.onEvict = h.forget
	}
	fail := func(err error) (*Handler, error) {
		cancel()
		h.events.Close()
		h.outcomes.Close()
		h.prio.Close()
		m.unregister()
		return nil, err
	}
	// The node judges every message by the handler's rules before acking
	// it (accept); everything accept reads exists already.
	cfg.Node.Accept, cfg.Node.AcceptReady = nil, h.accept
	cfg.Node.Overflow = h.overflow
	// The node's Data and Status unboxed: an allocation less each, four
	// per exchange.
	cfg.Node.Deliveries = true
	cfg.Node.Taker = taker{h}
	node, err := p2p.New(cfg.Node)
	if err != nil {
		return fail(fmt.Errorf("handler: %w", err))
	}
	h.node, h.self = node, node.ID()
	h.pkh, _ = p2p.PubKeyHash(cfg.Node.Key.GetPublic())
	if h.durable() {
		if err := h.resume(); err != nil {
			_ = node.Close()
			return fail(fmt.Errorf("handler: resuming from the store: %w", err))
		}
	}
	return h, nil
}

// SetResolver replaces Config.Resolver, for a resolver that needs the
// handler's node to exist first (a DHT on Node().Host()).
func (h *Handler) SetResolver(r Resolver) error { return h.post(resolverCmd{r}) }

// Events is the channel of data from peers: Request, Reply, Message. It is
// closed after Close.
func (h *Handler) Events() <-chan Event { return h.events.C() }

// Outcomes is the channel of exchange outcomes and errors: Outcome, Error.
// It is closed after Close.
func (h *Handler) Outcomes() <-chan Event { return h.outcomes.C() }

// Priority is the channel of alerts that must not wait behind data:
// Dropped, ConnectionLimit. It is closed after Close.
func (h *Handler) Priority() <-chan Event { return h.prio.C() }

// CheckReceive returns the next event without blocking, looking at Priority
// first, then Events, then Outcomes; ok is false when none is waiting.
func (h *Handler) CheckReceive() (ev Event, ok bool) {
	for _, ch := range [...]<-chan Event{h.prio.C(), h.events.C(), h.outcomes.C()} {
		select {
		case ev, ok := <-ch:
			if ok {
				return ev, true
			}
		default:
		}
	}
	return nil, false
}

// PeerID is the handler's identity.
func (h *Handler) PeerID() peer.ID { return h.self }

// Addrs are the handler's listen addresses, each ending in /p2p/<id>.
func (h *Handler) Addrs() []ma.Multiaddr { return h.node.Addrs() }

// PubKeyHash is the handler's identity as the BitVMX broker names it (see
// p2p.PubKeyHash); empty for key types that have none.
func (h *Handler) PubKeyHash() string { return h.pkh }

// Node is the handler's p2p node, for layers that share its host (a DHT).
// Sending on its channels or reading them would break the handler; its
// Receiver is nil (the handler reads Deliveries, p2p.Config.Deliveries).
func (h *Handler) Node() *p2p.Node { return h.node }

// Close shuts the handler down gracefully: no exchange starts any more,
// queued ones fail at once, and those in flight get Config.CloseTimeout to
// complete before they fail with ReasonClosed. Then the node is closed and
// the three channels with it, after handing them what still fits: events
// still queued behind a full channel are dropped (an OK request's Outcome
// carries its Reply, Outcome.Reply, so that a Reply dropped so is not
// lost with it; with a Store, the Outcomes of this handler's exchanges
// dropped so are kept in it, and the next start hands them out,
// Redelivered). Close returns once every goroutine the handler started
// has ended.
func (h *Handler) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.CloseTimeout)
	defer cancel()
	return h.Shutdown(ctx)
}

// Shutdown is Close with the deadline of ctx instead of CloseTimeout.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.closing.Store(true)
	select {
	case h.cmds <- shutdownCmd{deadline: ctx.Done()}:
	case <-h.loopDone:
	}
	<-h.loopDone
	return h.closeErr
}

// post applies an API call to the state machine from the calling
// goroutine, under mu (apply). Shutdown and the tests' state waits go
// through the loop, which they steer.
func (h *Handler) post(c any) error {
	switch c.(type) {
	case resolverCmd, removedCmd:
		return h.apply(false, func() { h.command(c) })
	}
	if h.closing.Load() {
		return ErrClosed
	}
	select {
	case h.cmds <- c:
		return nil
	case <-h.loopDone:
		return ErrClosed
	}
}

// apply runs do, an API call's change to the state machine, from the
// calling goroutine under mu. Only a reply may still be given while the
// handler closes. do does not escape: the exchange path's calls cost no
// allocation for it.
func (h *Handler) apply(whileClosing bool, do func()) error {
	if h.closing.Load() && !whileClosing {
		return ErrClosed
	}
	h.calls.Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	defer h.endCall()
	if h.exited {
		return ErrClosed
	}
	h.inCall = true
	do()
	h.inCall = false
	if h.afterInput() {
		// Only the loop ends the loop: tell it to look.
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// API calls, as the loop receives them.
type (
	resolverCmd struct{ r Resolver }
	shutdownCmd struct{ deadline <-chan struct{} }
)
