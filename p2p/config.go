package p2p

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxMessageSize = 1 << 20
	DefaultAckTimeout     = 10 * time.Second
	DefaultReadTimeout    = 10 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultDialTimeout    = 10 * time.Second
	DefaultMaxInFlight    = 64
	DefaultSendQueue      = 1024
	DefaultReceiverBuffer = 1024
	DefaultPriorityBuffer = 64
	DefaultSenderBuffer   = 64
	DefaultStreamsPerPeer = 4
	DefaultAckDelay       = 2 * time.Millisecond
	// DefaultStreamIdleTimeout is Config.StreamIdleTimeout's default.
	DefaultStreamIdleTimeout = time.Minute
	// DefaultHandshakeTimeout is Config.HandshakeTimeout's default:
	// go-libp2p's own accept timeout.
	DefaultHandshakeTimeout = 15 * time.Second
	// MaxAckDelay bounds Config.AckDelay well under any sensible ack
	// timeout of the peers.
	MaxAckDelay = 100 * time.Millisecond
	// MinStreamIdleTimeout bounds a positive Config.StreamIdleTimeout from
	// below: a stream must outlive the writes that open it.
	MinStreamIdleTimeout = 10 * time.Millisecond
)

// Config configures a Node. Only Key and Allowlist are required; every other
// zero value means the documented default.
type Config struct {
	// Key is the node's identity. Its peer ID is what others allowlist.
	Key crypto.PrivKey
	// ListenAddrs are TCP multiaddrs to listen on. Default DefaultListenAddr.
	ListenAddrs []ma.Multiaddr
	// Allowlist decides who may connect, and from which IPs. It is consulted
	// live: entries added or removed take effect at once, and a removed peer
	// is disconnected.
	Allowlist *allowlist.List
	// Routes decides which (peer, channel) may reach which local channel.
	// Nil permits every allowlisted peer to reach every channel.
	Routes *allowlist.Routes
	// RateLimit configures the misbehaviour token buckets. Ignored when
	// Limiter is set.
	RateLimit ratelimit.Config
	// Limiter, when set, is used instead of one built from RateLimit (to
	// share buckets between nodes or inspect them).
	Limiter *ratelimit.Limiter

	// MaxMessageSize is the largest payload sent or accepted, in bytes.
	// Default 1 MiB.
	MaxMessageSize int
	// AckTimeout is how long a sent message may wait for its ack. Default 10s.
	AckTimeout time.Duration
	// ReadTimeout bounds the time a frame may take to arrive once its first
	// byte has (an idle stream is not timed). Default 10s.
	ReadTimeout time.Duration
	// WriteTimeout bounds one write to a peer: a peer that stops reading
	// for that long has its stream reset. Default 10s.
	WriteTimeout time.Duration
	// AckDelay is how long the ack of a message sent with LazyAck may wait
	// for a message of ours to the same peer to carry it. Default 2ms, at
	// most MaxAckDelay; negative acks every message at once.
	AckDelay time.Duration
	// DialTimeout bounds connecting to a peer and opening a stream, to any
	// address: go-libp2p's shorter limit for loopback and private
	// addresses (5s) does not apply. Default 10s.
	DialTimeout time.Duration
	// HandshakeTimeout bounds an inbound connection from its accept until
	// it is ready (the security protocol's negotiation, the Noise
	// handshake, the muxer's): the node closes one still unfinished then,
	// and charges its IP a failed_handshake (docs/security.md). It is the
	// listener's side of DialTimeout: a node that gives its own dials
	// longer, because its machine is slow or loaded, gives its peers'
	// handshakes longer with it, or a dial its peer is still waiting for
	// is cut short here. A longer one lets a stalling stranger hold a
	// transient connection slot, and its IP go uncharged, that much
	// longer. Default 15s.
	HandshakeTimeout time.Duration
	// MaxInFlight is how many sent messages to one peer may await their ack
	// at once on a stream. It is enforced on receipt too: a message that
	// arrives while this many of the peer's are unanswered on its stream is
	// refused with ReasonTooManyInFlight (docs/PROTOCOL.md §4.6). Default 64.
	MaxInFlight int
	// SendQueue is how many messages to one peer may wait to be sent; past
	// it SendMsg gets a Status with ReasonQueueFull. Default 1024.
	SendQueue int
	// StreamsPerPeer caps the inbound message streams one peer may hold
	// open. Default 4.
	StreamsPerPeer int
	// StreamIdleTimeout is how long a message stream may carry nothing
	// before the node closes it, gracefully (docs/PROTOCOL.md §4.1): it
	// closes between one and two timeouts after its last message, and the
	// connection stays open; the next message opens a new stream. An idle
	// stream costs a goroutine at each end and its buffers. Default 1m,
	// at least MinStreamIdleTimeout; negative: never.
	StreamIdleTimeout time.Duration

	// ReceiverBuffer, PriorityBuffer and SenderBuffer size the three
	// channels. Defaults 1024, 64, 64.
	ReceiverBuffer int
	PriorityBuffer int
	SenderBuffer   int
	// Deliveries makes the node deliver what Receiver would on the
	// Deliveries channel instead, as Delivery values, in the same order:
	// Data and Status are not boxed into an Event there, which saves an
	// allocation each, at the price of a larger channel buffer
	// (ReceiverBuffer Deliveries of 144 bytes on 64-bit platforms,
	// against interface values of 16). Receiver is then nil. Off by default; the handler turns it
	// on for its node.
	Deliveries bool
	// Taker, with Deliveries, is told when deliveries wait in the
	// Deliveries channel, and a stream's reader hands it what it has just
	// delivered (Taker.Take), for a caller that takes them under a lock
	// of its own instead of waiting on the channel. Optional.
	Taker Taker

	// Logger receives the node's logs. Default: no logging.
	Logger *zap.Logger
	// Metrics, when set, receives the node's Prometheus collectors
	// (bitvmx_p2p_*, listed in docs/operations.md) and go-libp2p's own
	// swarm, identify and resource-manager metrics. One node per registry:
	// wrap it with prometheus.WrapRegistererWith to run several.
	Metrics prometheus.Registerer
	// ReusePort makes outbound connections leave from the listening
	// address and port. Off by default: re-dialing a peer straight after a
	// disconnect then collides with the old connection's TIME_WAIT state.
	// Turn it on for a multi-homed host whose peers bind its key to the IP
	// it listens on, which is then the IP they see it dial from.
	ReusePort bool
	// Accept, when set, judges every message that passed the node's own
	// checks before the node acknowledges or delivers it, for a caller that
	// must do something first: a durable inbox writes the message to disk
	// before its sender may hear OK. It runs on the reader of the stream the
	// message arrived on, in arrival order, and must not block. It returns
	// its verdict, or a non-nil wait that gives the verdict later (a disk
	// write in flight): the node calls wait from another goroutine, in
	// arrival order, while the reader goes on judging the frames that
	// follow, so the messages a peer pipelines share one disk write; it
	// acks them in order.
	// Messages judged ReasonOK are delivered, or refused busy when the
	// Receiver is full (but see Overflow); others are answered with the
	// verdict as their ack: ReasonBusy, ReasonMalformed, ReasonShuttingDown, ReasonTooLarge,
	// ReasonUnknownExchange or ReasonUnanswered (any other reason is sent
	// as busy). A
	// ReasonMalformed or ReasonTooLarge verdict costs the peer a
	// misbehaviour token (malformed_message, oversized_message), as the
	// node's own refusals do; the others cost nothing. None ends the
	// stream.
	//
	// The node cannot tell whether a wait will block, so it writes the
	// acks it owes before calling each one; AcceptReady lets it keep them
	// for one write while the verdicts behind them are known already.
	Accept func(Data) (verdict Reason, wait func() Reason)

	// AcceptReady, when set, is used in place of Accept (set one of them,
	// not both): the same judgement, except that a wait comes with ready, a
	// channel that is closed once wait's verdict is known (wait then
	// returns at once). The node writes the acks it owes as soon as the
	// next frame's verdict is not ready, so an ack never waits for a later
	// verdict, and the acks of frames judged together (one disk write)
	// still leave in one write. A nil ready is a verdict whose readiness
	// is unknown, as with Accept. A wait whose ready is closed already
	// when AcceptReady returns, with no earlier frame of the stream
	// waiting, is called at once by the reader (no hop to another
	// goroutine); its message is still one the caller took (Overflow):
	// the way to take a message without a disk write.
	AcceptReady func(Data) (verdict Reason, ready <-chan struct{}, wait func() Reason)

	// Overflow, when set, takes the messages that Accept (or AcceptReady)
	// admitted through a wait (it wrote them down) and that the Receiver has no room for:
	// the caller has them, so the node acks them OK and hands them here
	// instead of answering busy, which would tell the sender a message was
	// not taken that is. It runs on the stream's goroutines, after the ack
	// is queued and outside the node's locks, and must not block. Without
	// it such a message is answered busy, as any other.
	Overflow func(Data)

	// NoInboundMessages makes the node refuse every message stream a peer
	// opens: it does not serve /bitvmx/msg/2.0.0, so the peer's proposal
	// is answered "na" and its message fails as a failed dial, which its
	// sender retries later, uncharged (docs/PROTOCOL.md §4.1). Streams
	// this node opens work as usual, and what a peer writes on them, its
	// own messages included (§4.1), is still taken: a node that opens
	// one judges it with Accept. For a short-lived tool that borrows a
	// running node's key (p2pnode find): without it, a peer's messages for
	// that node would be acked OK by the tool and handed to no one.
	NoInboundMessages bool

	// Relay makes the node a circuit relay for its allowlisted peers
	// (relay.go). Off by default.
	Relay RelayService
	// Relays are member relays this node holds reservations on (through
	// go-libp2p's AutoRelay), so that peers can dial it through them when
	// it cannot be dialed directly; and through which it dials the peers
	// it has no direct address for. Each is a direct address ending in
	// /p2p/<relay's peer ID>; several addresses of one relay may be given.
	Relays []ma.Multiaddr
	// Reachability is what the node assumes of itself when Relays are
	// set: unknown (the default) or private makes it hold reservations on
	// them; public makes it dial through them only. AutoNAT is not used
	// to find out: its dial-back comes from a key no allowlist admits.
	Reachability network.Reachability
	// HolePunching turns on DCUtR: a relayed connection is upgraded to a
	// direct one when both NATs allow it. It needs ReusePort (set for it)
	// and learns the node's public address from what its peers observe.
	HolePunching bool

	// HostOptions are appended to the libp2p options the node builds, for
	// what Config does not cover (for example libp2p.EnableRelay()). They can
	// weaken the node's guarantees; use with care.
	HostOptions []libp2p.Option

	// accept is AcceptReady, or Accept with no ready (withDefaults).
	accept func(Data) (Reason, <-chan struct{}, func() Reason)

	// relays are Relays parsed (withDefaults).
	relays []peer.AddrInfo

	// drainWait, when positive, replaces how long a disconnection waits
	// for the peer to close its half of a stream (drain.go). Tests only:
	// export_test.go.
	drainWait time.Duration
	// disconnectHook, when set, runs inside disconnect between marking the
	// peer's connections closing and taking the list of streams to drain.
	// Tests only: export_test.go.
	disconnectHook func()
	// streamAddedHook, when set, runs in handleStream between adding an
	// inbound stream to the node's set and looking again whether its
	// connection is closing. Tests only: export_test.go.
	streamAddedHook func()
	// endHook, when set, runs as a stream's end begins (msgStream.end), in
	// the goroutine ending it. Tests only: export_test.go.
	endHook func(inbound bool)
	// closeWaitHook, when set, runs in Close before it waits for the end
	// of a stream it failed, which another goroutine may be finishing.
	// Tests only: export_test.go.
	closeWaitHook func()
	// flushLaterHook, when set, runs in the node loop each time it takes
	// the bell of Send's messages left for it (flushLater), before it
	// flushes them. Tests only: export_test.go.
	flushLaterHook func()
	// closeDrainedHook, when set, runs in Close once it has drained the
	// streams it listed, before it cancels the node and closes the host.
	// Tests only: export_test.go.
	closeDrainedHook func()
	// openHook, when set, runs in peerSender.open once no DisconnectFrom
	// closes the peer's connections, before it opens a stream. Tests only:
	// export_test.go.
	openHook func()
	// peerClosingHook, when set, runs in peerSender.open each time it is
	// about to wait for a connection the peer seems to be closing
	// (peer_closing.go). Tests only: export_test.go.
	peerClosingHook func()
	// enqueueHook, when set, runs in Send's slow way between its closed
	// check and its handoff to the node loop; closeBarrierHook in Close just
	// before Close waits for those handoffs. Tests only: export_test.go.
	enqueueHook, closeBarrierHook func()
	// writeHook, when set, runs before each write to a message stream this
	// node opened; readHook on the stream's reader after it read the
	// answer to the proposal (err nil) and after each read that failed
	// (proposedStream). Tests only: export_test.go.
	writeHook func()
	readHook  func(err error)
	// refusedHook, when set, runs in onAck between the Status of the
	// frame an id-0 ack answered and the end of its stream. Tests only:
	// export_test.go.
	refusedHook func()
	// openedHook, when set, runs in peerSender.deliver once a stream has
	// been opened for a queued message, before the message is written.
	// Tests only: export_test.go.
	openedHook func()
	// handshakeNow, when set, is the clock of the inbound handshake guard
	// (handshake.go), in place of time.Now. Tests only: export_test.go.
	handshakeNow func() time.Time
	// dialHook, when set, may replace the connection each of dialPeer's
	// dials got from go-libp2p: a test hands back a closed one, as
	// go-libp2p's dial worker can. Tests only: export_test.go.
	dialHook func(network.Conn) network.Conn
}

// DefaultListenAddr is where a node listens when Config.ListenAddrs is
// empty: loopback only, on a port the system picks, so that a node nobody
// configured is not reachable from other hosts.
const DefaultListenAddr = "/ip4/127.0.0.1/tcp/0"

// ErrNoKey and ErrNoAllowlist report a Config missing a required field;
// ErrTwoAccepts one with both Accept and AcceptReady set; ErrTakerAlone
// one with a Taker but not Deliveries.
var (
	ErrNoKey       = errors.New("p2p: config has no identity key")
	ErrNoAllowlist = errors.New("p2p: config has no allowlist")
	ErrTwoAccepts  = errors.New("p2p: config sets both Accept and AcceptReady")
	ErrTakerAlone  = errors.New("p2p: config sets a Taker without Deliveries")
)

func (c Config) withDefaults() (Config, error) {
	if c.Key == nil {
		return c, ErrNoKey
	}
	if c.Allowlist == nil {
		return c, ErrNoAllowlist
	}
	if c.Taker != nil && !c.Deliveries {
		return c, ErrTakerAlone
	}
	switch {
	case c.Accept != nil && c.AcceptReady != nil:
		return c, ErrTwoAccepts
	case c.AcceptReady != nil:
		c.accept = c.AcceptReady
	case c.Accept != nil:
		accept := c.Accept
		c.accept = func(d Data) (Reason, <-chan struct{}, func() Reason) {
			verdict, wait := accept(d)
			return verdict, nil, wait
		}
	}
	if len(c.ListenAddrs) == 0 {
		c.ListenAddrs = []ma.Multiaddr{ma.StringCast(DefaultListenAddr)}
	}
	setDefault(&c.MaxMessageSize, DefaultMaxMessageSize)
	setDefault(&c.AckTimeout, DefaultAckTimeout)
	setDefault(&c.ReadTimeout, DefaultReadTimeout)
	setDefault(&c.WriteTimeout, DefaultWriteTimeout)
	setDefault(&c.DialTimeout, DefaultDialTimeout)
	setDefault(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	switch {
	case c.AckDelay == 0:
		c.AckDelay = DefaultAckDelay
	case c.AckDelay > MaxAckDelay:
		return c, fmt.Errorf("p2p: AckDelay %s is over the maximum of %s", c.AckDelay, MaxAckDelay)
	}
	setDefault(&c.MaxInFlight, DefaultMaxInFlight)
	setDefault(&c.SendQueue, DefaultSendQueue)
	setDefault(&c.StreamsPerPeer, DefaultStreamsPerPeer)
	switch {
	case c.StreamIdleTimeout == 0:
		c.StreamIdleTimeout = DefaultStreamIdleTimeout
	case c.StreamIdleTimeout > 0 && c.StreamIdleTimeout < MinStreamIdleTimeout:
		return c, fmt.Errorf("p2p: StreamIdleTimeout %s is under the minimum of %s", c.StreamIdleTimeout, MinStreamIdleTimeout)
	}
	setDefault(&c.ReceiverBuffer, DefaultReceiverBuffer)
	setDefault(&c.PriorityBuffer, DefaultPriorityBuffer)
	setDefault(&c.SenderBuffer, DefaultSenderBuffer)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Limiter == nil {
		c.Limiter = ratelimit.New(c.RateLimit)
	}
	self, err := peer.IDFromPrivateKey(c.Key)
	if err != nil {
		return c, fmt.Errorf("p2p: identity key: %w", err)
	}
	if c.relays, err = staticRelays(self, c.Relays); err != nil {
		return c, err
	}
	if c.HolePunching {
		// A hole punch dials from the listening port, which the NAT has
		// mapped for the connections that left from it.
		c.ReusePort = true
	}
	return c, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
