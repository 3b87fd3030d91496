package handler

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// Defaults for the zero values of Config.
const (
	DefaultReplyTimeout         = 30 * time.Second
	DefaultMaxAttempts          = 5
	DefaultBackoffBase          = 100 * time.Millisecond
	DefaultBackoffMax           = 5 * time.Second
	DefaultIdleTimeout          = 30 * time.Second
	DefaultLinger               = 250 * time.Millisecond
	DefaultMaxConcurrentPerPeer = 1
	DefaultCloseTimeout         = 5 * time.Second
	DefaultEventBuffer          = 1024
	DefaultMaxBacklog           = 1024
	DefaultDedupeTTL            = 10 * time.Minute
	DefaultDedupePerPeer        = 4096
	DefaultResolveTimeout       = 10 * time.Second
	DefaultMaxInboxPerPeer      = 1024
	DefaultMaxInboxBytesPerPeer = 64 << 20
	// DefaultMaxInboxBytes is Config.MaxInboxBytes without a Store, or
	// with one that does not tell its cap: a quarter of
	// store.DefaultMaxBytes, as for a store of that cap.
	DefaultMaxInboxBytes = store.DefaultMaxBytes / 4
)

// ErrInvalidConfig is the error of New and NewWithConfig for a Config value
// out of its range; the message names the field.
var ErrInvalidConfig = errors.New("handler: invalid config")

// capped is a Store that tells its size cap; *store.Store is one
// (store.Options.MaxBytes). Config.MaxInboxBytes defaults to a share of it.
type capped interface{ MaxBytes() int64 }

// Config configures a Handler. Only Node.Key and Node.Allowlist are
// required; every other zero value means the documented default.
type Config struct {
	// Node configures the p2p node the handler creates and owns: identity,
	// allowlist, listen addresses, limits. Node.Logger defaults to Logger.
	Node p2p.Config

	// Channel is the p2p channel the handler's envelopes travel on, at both
	// ends. Default 0, the p2p default. Data arriving on other channels is
	// reported as an Error, costs its sender an unauthorized token
	// (nothing on the handler's node reads it) and is otherwise ignored.
	Channel uint32

	// ReplyTimeout bounds the wait for a reply once the request is
	// acknowledged, and the time the application has to call Response on
	// a received request. Default 30s.
	ReplyTimeout time.Duration

	// MaxAttempts bounds the sends of one message (request, reply or
	// one-way message) that is refused busy, lost with its connection, or
	// not delivered because the dial failed. Default 5.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the wait before a resend: BackoffBase
	// doubled per attempt, capped at BackoffMax, with half of it random
	// (jitter). Defaults 100ms and 5s.
	BackoffBase time.Duration
	BackoffMax  time.Duration

	// IdleTimeout disconnects a peer with which no exchange has been
	// active for that long. Default 30s; negative disables it. A peer
	// whose connections relaying needs (p2p.Node.Relaying: a relay
	// reservation either way, or a circuit over them) is not disconnected,
	// for idleness nor after an exchange; it is looked at again after
	// another IdleTimeout.
	IdleTimeout time.Duration
	// KeepConnection keeps a peer's connection after an exchange, for
	// queued and later exchanges, until IdleTimeout. By default (false)
	// each exchange gets its own connection, closed when it completes, as
	// the BitVMX handler's design has it. Both ends must keep the
	// connection for it to be kept. Its message stream still closes once
	// idle for Node.StreamIdleTimeout; the next exchange opens another.
	KeepConnection bool
	// RepliesOnly makes the handler take from peers only the replies to
	// its own requests: a request or one-way message is refused busy, so
	// its sender keeps it and resends it later (MaxAttempts). For a
	// short-lived tool that borrows a running node's key (p2pnode send
	// --standalone): without it, the tool would ack OK what peers meant for
	// that node, and hand it to an application that does not read it.
	RepliesOnly bool

	// Linger is how long the side that received an exchange's last
	// message (the dialer receiving the reply, the receiver of a one-way
	// message) waits for the peer to close the connection before closing
	// it itself, without KeepConnection; also how long after a close the
	// handler checks that the connection is gone. The peer closes first
	// because it learns last that the exchange is complete, from our ack;
	// our own close would write that ack first anyway (p2p.DisconnectFrom),
	// so Linger only decides who closes, and how long a connection the
	// peer keeps (its KeepConnection) stays. docs/PROTOCOL.md §5. Default
	// 250ms.
	Linger time.Duration

	// MaxConcurrentPerPeer is how many exchanges the handler dials to one
	// peer at once; further Request and Send calls queue, in order.
	// Default 1, the BitVMX handler's one exchange per peer.
	MaxConcurrentPerPeer int

	// CloseTimeout is how long Close waits for exchanges in flight before
	// failing them with ReasonClosed. Default 5s.
	CloseTimeout time.Duration

	// EventBuffer sizes each of the three application channels. Default
	// 1024.
	EventBuffer int
	// MaxBacklog is how many received requests, replies and messages may
	// wait beyond a full Events channel. Past it the handler stops taking
	// data from its node until the application catches up; the node then
	// answers its peers "busy", and they resend later. Default 1024.
	MaxBacklog int

	// DedupeTTL and DedupePerPeer bound the memory of exchanges already
	// received from each peer, which is what keeps a resent request from
	// being delivered twice. TTL must exceed the longest a dialer may keep
	// resending. Defaults 10 minutes and 4096. The TTL runs on the
	// monotonic clock, and, for the records a Store holds at the start,
	// from the start: a process cannot tell how long it was down from a
	// wall clock that may have been stepped since.
	DedupeTTL     time.Duration
	DedupePerPeer int

	// Store, when set, makes exchanges durable across restarts
	// (docs/durability.md): Request and Send return once their exchange is
	// on disk, and a handler started later on the same store resumes it; a
	// request or message received is on disk before its sender hears OK,
	// and stays there until the application has handled it (Response, Ack);
	// dedupe records outlive the process; exchanges that fail finally are
	// kept as dead letters. The caller opens the store (store.Open) and
	// closes it after the handler. Nil (the default) is ephemeral: a
	// restart forgets everything in flight.
	Store Store
	// AutoAck counts a one-way message as handled once it is delivered on
	// Events, for an application that does not call Ack. Only meaningful
	// with a Store.
	AutoAck bool
	// AckOutcomes keeps each of our finished exchanges in the Store until
	// the application calls AckOutcome for it, having dealt with its Reply
	// and Outcome. A restart before that hands them out again, marked
	// Redelivered: an application that dies between receiving an Outcome
	// and acting on it gets it again instead of never. Without it (the
	// default) the exchange leaves the store as its Outcome is handed out,
	// and one handed out in the instant the process dies is lost with it.
	// Only meaningful with a Store.
	AckOutcomes bool
	// MaxInboxPerPeer bounds the requests and messages received from one
	// peer that the handler holds: those not yet handled by the
	// application, and the requests it answered whose replies await the
	// peer's ack (each reply stays in memory until then); past it the peer
	// is answered "busy" and resends later, so one peer cannot fill the
	// disk or the memory that others need, not even by never reading our
	// replies. Without a Store a message is handled once delivered, so it
	// counts the requests held unanswered and those whose replies await
	// their ack; requests the peer pipelines before the first reaches the
	// handler's loop may pass it by what the peer can have in flight.
	// Default 1024.
	MaxInboxPerPeer int
	// MaxInboxBytesPerPeer bounds the bytes those hold, with or without a
	// Store: the payloads of the requests and messages, and the envelopes
	// of the replies awaiting the peer's ack. Past it a new request or
	// message is answered "busy" as past MaxInboxPerPeer, which alone
	// would let one peer hold MaxInboxPerPeer messages of up to the node's
	// MaxMessageSize (1 MiB by default, p2p.DefaultMaxMessageSize), and as
	// many replies. One message is always taken into an empty inbox,
	// whatever its size. With a Store the count of those on disk survives
	// a restart (the pending records are counted as they are loaded), and
	// it bounds as much the replies the store keeps for resends of the
	// peer's answered requests (DedupeTTL): past it the oldest lose their
	// reply, and a resend of one gets none. Default 64 MiB
	// (DefaultMaxInboxBytesPerPeer), or half of MaxInboxBytes when that is
	// less (a store's cap of 256 MiB or less, by default), so that one
	// peer cannot hold what the node takes from every peer together. More
	// than MaxInboxBytes (its default applied) is invalid; as much lets
	// one peer hold all of it, shutting every other out to one message in
	// flight.
	MaxInboxBytesPerPeer int
	// MaxInboxBytes bounds the same sums over all peers together, as
	// MaxInboxBytesPerPeer bounds them for each: what the handler holds for
	// every peer (the payloads of the requests and messages not yet
	// handled, and the envelopes of the replies awaiting their peers'
	// acks), and, with a Store, the replies the store keeps for resends of
	// every peer's answered requests. Without it, N peers each under their
	// own bounds could together make the node hold N times them, and once
	// the store is full the node's own Request and Send, and the ends of
	// its exchanges, fail with store.ErrFull. Past it a new request or
	// message is answered "busy", unless its peer holds nothing: one from
	// such a peer is always taken, so that the peers holding the bound
	// cannot shut out one that does not (the bound may be passed by one
	// message per such peer). Past it too stored replies whose exchanges
	// have ended lose their reply, those of the peer holding the most
	// first (oldest first among its own), so that a peer filling its own
	// share cannot push out the replies of peers holding less. Both are
	// checked as a message arrives and as a reply is stored: the replies
	// to requests already taken add to the first sum when they are given. Default, with a Store that tells its
	// cap (store.Store.MaxBytes): a quarter of it, so that what the peers
	// make the store hold, both sums together, takes about half of it at
	// most, leaving the rest to the node's own exchanges, dedupe records
	// and dead letters; otherwise DefaultMaxInboxBytes (256 MiB). With
	// such a Store it may be at most half its cap; negative is invalid.
	MaxInboxBytes int

	// Resolver, if set, finds addresses for a peer that Request or Send was
	// given no address for and that is not connected. It is asked again
	// once when a dial to a cached or resolved address fails.
	Resolver Resolver
	// ResolveTimeout bounds one Resolve call. Default 10s.
	ResolveTimeout time.Duration

	// Logger receives the handler's logs. Default: no logging.
	Logger *zap.Logger

	// Metrics, when set, receives the handler's Prometheus collectors:
	// bitvmx_p2p_exchanges_total{kind,role,result},
	// bitvmx_p2p_exchange_duration_seconds{kind,role} and
	// bitvmx_p2p_unknown_exchange_replies_total (docs/operations.md).
	// Nil records nothing. It may be the registry of Node.Metrics: the
	// names do not collide. One handler per registry.
	Metrics prometheus.Registerer

	// Observe, when set, is called with every event of the node (Receiver
	// and Priority) before the handler handles it, for an application that
	// wants to see what the handler keeps to itself: connections coming and
	// going, refusals (p2p.Refused, also those the node reports as it
	// closes), acks. It runs on the handler's loop goroutine, which every
	// exchange waits on, so it must return at once and never block (hand
	// the event to a queue of your own instead). It may call Request, Send
	// and Response, but not Close or Shutdown, which wait for the loop. A
	// Data event shares its bytes with the Request, Reply or Message the
	// handler delivers from it: read them, do not change them.
	Observe func(p2p.Event)
}

func (c Config) withDefaults() Config {
	setDefault(&c.ReplyTimeout, DefaultReplyTimeout)
	setDefault(&c.MaxAttempts, DefaultMaxAttempts)
	setDefault(&c.BackoffBase, DefaultBackoffBase)
	setDefault(&c.BackoffMax, DefaultBackoffMax)
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	setDefault(&c.Linger, DefaultLinger)
	setDefault(&c.MaxConcurrentPerPeer, DefaultMaxConcurrentPerPeer)
	setDefault(&c.CloseTimeout, DefaultCloseTimeout)
	setDefault(&c.EventBuffer, DefaultEventBuffer)
	setDefault(&c.MaxBacklog, DefaultMaxBacklog)
	setDefault(&c.DedupeTTL, DefaultDedupeTTL)
	setDefault(&c.DedupePerPeer, DefaultDedupePerPeer)
	setDefault(&c.ResolveTimeout, DefaultResolveTimeout)
	setDefault(&c.MaxInboxPerPeer, DefaultMaxInboxPerPeer)
	c.MaxInboxBytes = c.maxInboxBytes()
	if c.MaxInboxBytesPerPeer <= 0 {
		c.MaxInboxBytesPerPeer = max(min(DefaultMaxInboxBytesPerPeer, c.MaxInboxBytes/2), 1)
	}
	if c.BackoffMax < c.BackoffBase {
		c.BackoffMax = c.BackoffBase
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Node.Logger == nil {
		c.Node.Logger = c.Logger.Named("p2p")
	}
	return c
}

// maxInboxBytes is MaxInboxBytes, its default applied.
func (c Config) maxInboxBytes() int {
	if c.MaxInboxBytes != 0 {
		return c.MaxInboxBytes
	}
	if st, ok := c.Store.(capped); ok && st.MaxBytes() > 0 {
		return int(min(st.MaxBytes()/4, math.MaxInt))
	}
	return DefaultMaxInboxBytes
}

// check rejects the values of c that no default stands for.
func (c Config) check() error {
	if c.MaxInboxBytes < 0 {
		return fmt.Errorf("%w: MaxInboxBytes %d is negative (0 is the default)", ErrInvalidConfig, c.MaxInboxBytes)
	}
	if node := c.maxInboxBytes(); c.MaxInboxBytesPerPeer > node {
		return fmt.Errorf("%w: MaxInboxBytesPerPeer %d is more than MaxInboxBytes, %d: one peer could hold all the node takes from every peer, and push out the others' stored replies (0 is at most half of it)",
			ErrInvalidConfig, c.MaxInboxBytesPerPeer, node)
	}
	if st, ok := c.Store.(capped); ok && st.MaxBytes() > 0 && int64(c.MaxInboxBytes) > st.MaxBytes()/2 {
		return fmt.Errorf("%w: MaxInboxBytes %d is more than half the store's cap of %d bytes: the peers' inbox and the replies kept for them, each bounded by it, could fill the store, and the node's own exchanges would fail full (0 is a quarter of the cap)",
			ErrInvalidConfig, c.MaxInboxBytes, st.MaxBytes())
	}
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Option adjusts a Config; New applies its options in order. Any
// func(*Config) is an Option.
type Option func(*Config)

// WithReplyTimeout sets Config.ReplyTimeout.
func WithReplyTimeout(d time.Duration) Option { return func(c *Config) { c.ReplyTimeout = d } }

// WithRetry sets Config.MaxAttempts, BackoffBase and BackoffMax.
func WithRetry(maxAttempts int, base, max time.Duration) Option {
	return func(c *Config) { c.MaxAttempts, c.BackoffBase, c.BackoffMax = maxAttempts, base, max }
}

// WithIdleTimeout sets Config.IdleTimeout.
func WithIdleTimeout(d time.Duration) Option { return func(c *Config) { c.IdleTimeout = d } }

// WithKeepConnection sets Config.KeepConnection.
func WithKeepConnection(keep bool) Option { return func(c *Config) { c.KeepConnection = keep } }

// WithLinger sets Config.Linger.
func WithLinger(d time.Duration) Option { return func(c *Config) { c.Linger = d } }

// WithMaxConcurrentPerPeer sets Config.MaxConcurrentPerPeer.
func WithMaxConcurrentPerPeer(n int) Option { return func(c *Config) { c.MaxConcurrentPerPeer = n } }

// WithResolver sets Config.Resolver.
func WithResolver(r Resolver) Option { return func(c *Config) { c.Resolver = r } }

// WithMetrics sets Config.Metrics.
func WithMetrics(reg prometheus.Registerer) Option { return func(c *Config) { c.Metrics = reg } }

// WithObserver sets Config.Observe.
func WithObserver(f func(p2p.Event)) Option { return func(c *Config) { c.Observe = f } }

// WithStore sets Config.Store.
func WithStore(s Store) Option { return func(c *Config) { c.Store = s } }

// WithLogger sets Config.Logger.
func WithLogger(l *zap.Logger) Option { return func(c *Config) { c.Logger = l } }

// WithNode adjusts the p2p node's configuration.
func WithNode(f func(*p2p.Config)) Option { return func(c *Config) { f(&c.Node) } }
