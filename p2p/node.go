package p2p

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/internal/outbox"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// ErrNotAllowlisted is the error of a Dial or SendMsg to a peer that is not
// on the allowlist.
var ErrNotAllowlisted = errors.New("p2p: peer is not on the allowlist")

// ErrPeerCutOff is matched (errors.Is) by the error of a SendMsg
// reported ReasonRejected because this node's rate limiter has cut the
// peer off (ConnectionLimit): the peer is on the allowlist and refused
// nothing, and this node dials it again once the ban ends.
var ErrPeerCutOff = errors.New("p2p: peer is cut off by this node's rate limiter")

// ErrClosed is returned by Send once the node is closed.
var ErrClosed = errors.New("p2p: node closed")

// maxQueuedEvents caps the connection and error events waiting for a caller
// that does not read: a churning peer must not grow memory without bound.
const maxQueuedEvents = 4096

// Node is a running BitVMX p2p node. Create it with New, use its three
// channels, and stop it with Close.
type Node struct {
	cfg     Config
	log     *zap.Logger
	metrics *metrics
	host    host.Host
	// started is set once host is assigned. libp2p listens before New
	// returns, so the gater can charge (and cut off) before then; acting on
	// connections must wait for the host, or it would read a nil field.
	started atomic.Bool
	limiter *ratelimit.Limiter

	sender chan Command
	events *receiver             // Receiver, or Deliveries
	prio   *outbox.Outbox[Event] // Priority

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the node starts

	sendersMu   sync.Mutex // the run loop writes senders; Send's fast path reads
	senders     map[peer.ID]*peerSender
	viaSend     atomic.Int64    // commands given to Send, not yet handled by the run loop
	dirty       []*msgStream    // written to by the run loop, not yet flushed
	deferred    deferredStreams // written to by Send's fast way with SendMsg.Defer (Flush)
	later       deferredStreams // written to by Send's fast way, left for the run loop to flush (flushLater)
	flushBell   chan struct{}   // rung when later has streams
	streams     streamSet
	bufs        streamBuffers
	holds       holdSet  // Node.Hold
	draining    drainSet // peers whose DisconnectFrom is draining their streams
	conns       connTracker
	dialTurns   dialTurns   // dialPeer
	wrong       *addrMemory // addresses that proved another key (wrongaddr.go)
	denied      *addrMemory // relays that refused a circuit to a peer (relay_refused.go)
	refusals    *refusals
	relay       *relayState
	stopWatchAL func()

	// enqueueMu is the barrier between Send's slow way and Close: enqueue
	// holds it for reading from its closed check to its handoff, and Close
	// takes it once after cancelling, so that every enqueue has then
	// either failed or left its command for failUnhandled to find.
	enqueueMu sync.RWMutex

	closing   atomic.Bool // Close has begun: nothing more is delivered
	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error
}

// New starts a node listening on cfg.ListenAddrs.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		metrics:   m,
		cfg:       cfg,
		log:       cfg.Logger,
		limiter:   cfg.Limiter,
		sender:    make(chan Command, cfg.SenderBuffer),
		events:    newReceiver(cfg),
		prio:      outbox.New(cfg.PriorityBuffer, outbox.Options[Event]{Limit: maxQueuedEvents, Merge: mergeDropped}),
		ctx:       ctx,
		cancel:    cancel,
		senders:   make(map[peer.ID]*peerSender),
		flushBell: make(chan struct{}, 1),
		closed:    make(chan struct{}),
	}
	n.conns.n = n
	n.refusals = &refusals{
		emit:    func(ev Refused) { n.events.Push(ev, false) },
		log:     n.log,
		metrics: m,
		name:    func(p peer.ID) string { e, _ := cfg.Allowlist.Get(p); return e.Name },
	}
	refuse := func(ev Refused) { n.refusals.refuse(ev, time.Now()) }
	n.wrong = newAddrMemory(time.Now, wrongAddrTTL)
	n.denied = newAddrMemory(time.Now, relayRefusedTTL)
	hsNow := cfg.handshakeNow
	if hsNow == nil {
		hsNow = time.Now
	}
	g := &gater{list: cfg.Allowlist, limiter: n.limiter, charge: n.charge,
		refuse: refuse, pending: &relayPending{refuse: refuse}, wrong: n.wrong, wrongAddr: n.wrongAddr, denied: n.denied,
		declines: newAllowance(declineAllowance, wrongAddrTTL, maxDeclineIPs, hsNow), now: hsNow}
	n.relay, err = newRelayState(cfg, n.Charge, func(ev Event) { n.events.Push(ev, true) }, n.relayedConns)
	if err != nil {
		cancel()
		n.events.Close()
		n.prio.Close()
		m.unregister()
		return nil, fmt.Errorf("p2p: relay metrics: %w", err)
	}
	h, err := newHost(cfg, g, n.relay)
	if err != nil {
		cancel()
		n.events.Close()
		n.prio.Close()
		m.unregister()
		n.relay.unregister()
		return nil, err
	}
	n.host = h
	n.started.Store(true)
	h.Network().Notify(&n.conns)
	if !cfg.NoInboundMessages {
		h.SetStreamHandler(ProtocolID, n.handleStream)
	}
	n.addCircuitAddrs()
	n.stopWatchAL = cfg.Allowlist.OnChange(func(allowlist.Change) {
		n.enforceAllowlist()
		n.addCircuitAddrs()
	})
	// The host has listened (and may have admitted connections) since
	// newHost, before the subscription above: a peer removed from the
	// allowlist in that window was told to no one. Checking every
	// connection once now, after subscribing, leaves no gap.
	n.enforceAllowlist()
	n.wg.Add(2)
	go n.run()
	go n.runRefusals()
	if err := n.watchHolePunchReady(); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Sender is the channel of commands to the node.
func (n *Node) Sender() chan<- Command { return n.sender }

// Receiver is the channel of data and events from the node. It is closed
// after Close. With Config.Deliveries it is nil: read Deliveries instead.
func (n *Node) Receiver() <-chan Event {
	if n.events.boxed == nil {
		return nil
	}
	return n.events.boxed.C()
}

// Priority is the channel of alerts that must not wait behind data: Dropped.
// It is closed after Close.
func (n *Node) Priority() <-chan Event { return n.prio.C() }

// ID is the node's peer ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Addrs are the node's listen addresses, each ending in /p2p/<id>.
func (n *Node) Addrs() []ma.Multiaddr {
	suffix := ma.StringCast("/p2p/" + n.host.ID().String())
	var out []ma.Multiaddr
	for _, a := range n.host.Addrs() {
		out = append(out, a.Encapsulate(suffix))
	}
	return out
}

// Host is the underlying libp2p host, for layers built on the node (the DHT).
// Streams of other protocols are not subject to the message protocol's acks.
func (n *Node) Host() host.Host { return n.host }

// Limiter is the node's misbehaviour rate limiter.
func (n *Node) Limiter() *ratelimit.Limiter { return n.limiter }

// Config is the node's configuration, with defaults filled in.
func (n *Node) Config() Config { return n.cfg }

func (n *Node) run() {
	defer n.wg.Done()
	for {
		select {
		case cmd, ok := <-n.sender:
			if !ok {
				n.shutdown()
				<-n.ctx.Done()
				return
			}
			if sc, ok := cmd.(sentCmd); ok {
				n.handle(sc.Command)
				n.viaSend.Add(-1)
			} else {
				n.handle(cmd)
			}
			if len(n.sender) == 0 {
				for _, st := range n.dirty {
					st.requestFlush()
				}
				// Cleared, not only cut: the array would keep ended
				// streams, and what they hold, until overwritten.
				clear(n.dirty)
				n.dirty = n.dirty[:0]
			}
		case <-n.flushBell:
			// Whoever else was readied with the caller that left these
			// streams (the application's other goroutines, acting on
			// the Statuses one read brought) gets to add its message
			// first, so that they leave in one write.
			runtime.Gosched()
			if n.cfg.flushLaterHook != nil {
				n.cfg.flushLaterHook()
			}
			n.later.flush()
		case <-n.ctx.Done():
			return
		}
	}
}

// shutdown closes the node from inside its own run loop, which Close waits
// for, so it has to happen on another goroutine. The loop goes on until
// Close has written the acks the node owes and cancels it.
func (n *Node) shutdown() {
	n.closing.Store(true)
	go n.Close()
}

func (n *Node) handle(cmd Command) {
	switch c := cmd.(type) {
	case Dial:
		n.dial(c)
	case SendMsg:
		n.send(c)
	case DisconnectFrom:
		if c.Peer == "" {
			n.shutdown()
			return
		}
		n.disconnect(c.Peer, c.OpenedBefore)
	case *Dial:
		n.handle(*c)
	case *SendMsg:
		n.handle(*c)
	case *DisconnectFrom:
		n.handle(*c)
	default:
		n.events.Push(Error{Err: fmt.Errorf("p2p: unknown command %T", cmd)}, false)
	}
}

func (n *Node) dial(c Dial) {
	if !n.cfg.Allowlist.Contains(c.Peer) {
		n.events.Push(Error{Peer: c.Peer, Err: ErrNotAllowlisted}, false)
		return
	}
	addr, err := transportAddr(c.Peer, c.Addr)
	if err != nil {
		n.events.Push(Error{Peer: c.Peer, Err: err}, false)
		return
	}
	c.Addr = addr
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		// A connection a DisconnectFrom is closing would pass for this
		// Dial's success and close right after: connect once it is gone,
		// as a SendMsg does (peerSender.open).
		n.draining.wait(c.Peer, n.ctx.Done())
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.DialTimeout)
		defer cancel()
		// A relayed connection is a connection: Dial asks for one.
		ctx = network.WithAllowLimitedConn(ctx, "relayed connections carry messages")
		if c.Addr != nil {
			n.host.Peerstore().AddAddr(c.Peer, c.Addr, peerstore.TempAddrTTL)
		}
		// dialPeer, not Host.Connect: Connect waits for identify, which
		// nothing here needs (stream_open.go), and the node's dials of a
		// peer take turns (dial.go).
		if _, err := n.dialPeer(ctx, c.Peer); err != nil && n.ctx.Err() == nil {
			n.events.Push(Error{Peer: c.Peer, Err: fmt.Errorf("dial: %w", err)}, false)
		}
	}()
}

func (n *Node) send(c SendMsg) {
	switch {
	case len(c.Data) > n.cfg.MaxMessageSize:
		n.status(c, ReasonTooLarge, fmt.Errorf("message of %d bytes exceeds the limit of %d", len(c.Data), n.cfg.MaxMessageSize))
		return
	case !n.cfg.Allowlist.Contains(c.Peer):
		n.status(c, ReasonRejected, ErrNotAllowlisted)
		return
	}
	addr, err := transportAddr(c.Peer, c.Addr)
	if err != nil {
		n.status(c, ReasonDialFailed, err)
		return
	}
	c.Addr = addr
	ps, ok := n.senders[c.Peer]
	if !ok {
		ps = newPeerSender(n, c.Peer)
		n.sendersMu.Lock()
		n.senders[c.Peer] = ps
		n.sendersMu.Unlock()
	}
	m := outMsg{SendMsg: c}
	if st := ps.trySend(&m, false); st == nil {
		ps.enqueue(&m)
	} else if !slices.Contains(n.dirty, st) {
		n.dirty = append(n.dirty, st)
	}
}

// status emits the one Status a SendMsg gets.
func (n *Node) status(m SendMsg, r Reason, err error) {
	n.statusBy(m, r, err, false)
}

// statusBy is status; reader says the caller is a stream's reader, which
// then owes the Taker a Take (msgStream.owed).
func (n *Node) statusBy(m SendMsg, r Reason, err error, reader bool) {
	n.metrics.statusSent(r)
	n.events.pushStatus(Status{Peer: m.Peer, MsgID: m.ID, OK: r == ReasonOK, Reason: r, Err: err}, reader)
}

// clearBackoff forgets go-libp2p's dial backoff for p. The swarm refuses to
// redial a peer for seconds after a failed dial; here every dial is asked
// for by a caller (a SendMsg, a Dial, the handler's redial, Check) that
// owns its retry policy, and a refusal it did not ask for would only fail
// it. dialPeer clears it before each dial.
func (n *Node) clearBackoff(p peer.ID) {
	if sw, ok := n.host.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(p)
	}
}

// ErrAddrPeerMismatch is the error of an address whose /p2p component names
// another peer than the one it is given for.
var ErrAddrPeerMismatch = errors.New("p2p: address belongs to another peer")

// transportAddr strips a trailing /p2p/<id> from a, which must then be p.
func transportAddr(p peer.ID, a ma.Multiaddr) (ma.Multiaddr, error) {
	if a == nil {
		return nil, nil
	}
	tpt, id := peer.SplitAddr(a)
	if id != "" && id != p {
		return nil, fmt.Errorf("%w: %s is %s's", ErrAddrPeerMismatch, a, id)
	}
	if tpt == nil {
		return nil, fmt.Errorf("p2p: address %s has no transport part", a)
	}
	return tpt, nil
}

// remoteIP is the peer's IP on c, or the zero Addr when c goes through a
// relay: the IP there is the relay's, and charging it or matching it
// against the peer's binding would be charging and matching the relay.
func remoteIP(c network.Conn) netip.Addr {
	a := c.RemoteMultiaddr()
	if isRelayed(a) {
		return netip.Addr{}
	}
	ip, _ := ipOf(a)
	return ip
}

// AddAddr records an address for a peer, as a Dial or SendMsg with Addr
// would; the DHT uses it to hand over what it found.
func (n *Node) AddAddr(p peer.ID, a ma.Multiaddr, ttl time.Duration) {
	if ttl <= 0 {
		ttl = peerstore.TempAddrTTL
	}
	n.host.Peerstore().AddAddr(p, a, ttl)
}
