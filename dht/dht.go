package dht

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	kad "github.com/libp2p/go-libp2p-kad-dht"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// ProtocolID is the Kademlia protocol the DHT speaks.
const ProtocolID protocol.ID = ProtocolPrefix + "/kad/1.0.0"

// Polling of the routing table for the ready signal. kad-dht emits no event
// when its routing table gains a peer, and its PeerAdded hook is a plain
// field it already uses (assigning it after New would race with the peers New
// starts adding), so the table's size is polled: fast after a peer completes
// identify (the table gains it one DHT round trip later), backing off to
// slow while nobody comes.
const (
	readyPollFast = 5 * time.Millisecond
	readyPollSlow = time.Second
)

// bootstrapDialTimeout bounds one attempt to reach one bootstrap peer (the
// dial, then the DHT request that proves it answers).
const bootstrapDialTimeout = 10 * time.Second

// firstRejoinInterval is the first retry after the routing table was found
// empty; it doubles up to DefaultMaxRejoinInterval. It is not tied to
// Config.FirstRefresh (a republishing setting): a join that failed, for
// example a handshake that timed out on a busy machine, is retried soon
// whatever the republishing schedule.
const firstRejoinInterval = time.Second

// DHT is a node's membership in the private Kademlia network of the
// allowlisted operators: it keeps a routing table of allowlisted peers only,
// publishes the node's signed record, and finds other nodes' records and
// addresses. Create it with New and stop it with Close; the p2p node it runs
// on stays the caller's. A node runs at most one DHT.
type DHT struct {
	cfg  Config
	log  *zap.Logger
	node *p2p.Node
	host host.Host
	kad  *kad.IpfsDHT
	val  *validator
	sub  event.Subscription

	ready     chan struct{}
	readyOnce sync.Once
	// addrChanged is signalled (without blocking) when the host's
	// addresses change, for the publisher to republish.
	addrChanged chan struct{}
	// membersChanged is signalled when members join or leave, for the
	// publisher to republish a record sealed to the new members.
	membersChanged chan struct{}
	// bootErr is why the latest try to join through a bootstrap peer
	// failed (BootstrapError).
	bootErr atomic.Pointer[BootstrapError]
	// bootTried is signalled when bootErr is set: a change to wait on
	// (the tests).
	bootTried chan struct{}
	// refused is the latest refusal before the handshake met by a dial
	// of the DHT (refused.go).
	refused atomic.Pointer[refusedAt]
	// formatWarned holds the peers whose record of the other format was
	// logged (allowlisted peers only: the validator checks first).
	formatWarned sync.Map

	pub   publisher
	cache resolveCache

	ctx    context.Context
	cancel context.CancelFunc
	// goMu guards closed and wg.Add: a goroutine is started only while the
	// DHT is open, so Close's wg.Wait sees every one.
	goMu   sync.Mutex
	closed bool
	wg     sync.WaitGroup

	stopWatchAL func()
	closeOnce   sync.Once
	closeErr    error
	// unregister removes the collectors RegisterMetrics added, at Close,
	// under goMu (nil: none).
	unregister func()
}

// New joins node to the DHT: it starts kad-dht on node's host in server mode
// under ProtocolPrefix, scoped to the allowlist, with cfg.Bootstrap as the
// way in. It returns at once; Ready tells when the routing table has a peer.
// The node's own record is published once it is ready, then every
// cfg.Refresh, and at once when the node's addresses change.
func New(node *p2p.Node, cfg Config) (*DHT, error) {
	if node == nil {
		return nil, errors.New("dht: nil node")
	}
	cfg, err := cfg.withDefaults(node.Config().Allowlist)
	if err != nil {
		return nil, err
	}
	h := node.Host()
	d := &DHT{
		cfg:         cfg,
		log:         cfg.Logger.Named("dht"),
		node:        node,
		host:        h,
		ready:       make(chan struct{}),
		addrChanged: make(chan struct{}, 1),
		bootTried:   make(chan struct{}, 1),
		cache:       newResolveCache(),
		pub:         publisher{turn: make(chan struct{}, 1)},
		stopWatchAL: func() {},
	}
	d.membersChanged = make(chan struct{}, 1)
	d.val = &validator{list: cfg.Allowlist, self: h.ID(), now: cfg.Now, retain: cfg.ExpiredRetention,
		sealed: cfg.Membership != nil, otherFormat: d.warnFormat}
	d.ctx, d.cancel = context.WithCancel(context.Background())

	// kad-dht's own subscriber uses 256 as well: a subscriber whose buffer
	// is full blocks the emitter, so the buffer must absorb a burst of
	// identifications while the watch loop is busy.
	d.sub, err = h.EventBus().Subscribe([]any{
		new(event.EvtLocalAddressesUpdated),
		new(event.EvtPeerIdentificationCompleted),
	}, eventbus.BufSize(256))
	if err != nil {
		d.cancel()
		return nil, fmt.Errorf("dht: subscribe to host events: %w", err)
	}

	// kad-dht dials through dialHost: a refusal before the handshake
	// reads as the p2p node's dials report it (refused.go).
	d.kad, err = kad.New(dialHost{Host: h, d: d},
		kad.Mode(kad.ModeServer),
		kad.ProtocolPrefix(ProtocolPrefix),
		// Setting Validator replaces the default /pk and /ipns validators:
		// only node records can be stored.
		kad.Validator(record.NamespacedValidator{Namespace: d.val}),
		kad.DisableProviders(),
		// How long a stored record is kept after it was received: as long
		// as any valid record can last (the publisher's RecordTTL, not
		// this node's, sets its expiry) plus the retention. The validator
		// refuses a record expired for longer whatever kad-dht keeps.
		kad.MaxRecordAge(MaxRecordLifetime+cfg.ExpiredRetention),
		kad.RoutingTableFilter(func(_ any, p peer.ID) bool { return d.admits(p) }),
		kad.QueryFilter(func(_ any, ai peer.AddrInfo) bool { return d.admits(ai.ID) }),
		kad.BootstrapPeersFunc(d.bootstrapPeers),
	)
	if err != nil {
		h.RemoveStreamHandler(ProtocolID)
		d.sub.Close()
		d.cancel()
		return nil, fmt.Errorf("dht: start kad-dht: %w", err)
	}
	d.stopWatchAL = cfg.Allowlist.OnChange(d.onAllowlistChange)
	d.goFunc(d.watch)
	if !cfg.NoPublish {
		d.goFunc(d.publishLoop)
	}
	if len(cfg.Bootstrap) > 0 {
		d.goFunc(d.rejoinLoop)
	}
	d.log.Info("dht started", zap.Stringer("self", h.ID()), zap.Int("bootstrap", len(cfg.Bootstrap)))
	return d, nil
}

// Ready is closed the first time the routing table holds a peer: from then
// on Find, Resolve and Publish have someone to ask. A joining node is ready
// once a bootstrap peer answered; a bootstrap node (no Bootstrap) once the
// first node joined it. It is not reopened if the table empties later.
func (d *DHT) Ready() <-chan struct{} { return d.ready }

// WaitReady waits for Ready, ctx or Close, whichever comes first.
func (d *DHT) WaitReady(ctx context.Context) error {
	select {
	case <-d.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-d.ctx.Done():
		return ErrClosed
	}
}

// Peers returns the peers in the routing table.
func (d *DHT) Peers() []peer.ID { return d.kad.RoutingTable().ListPeers() }

// Close stops every goroutine the DHT started and closes kad-dht, and stops
// serving the DHT protocol on the host. It does not close the p2p node.
func (d *DHT) Close() error {
	d.closeOnce.Do(func() {
		d.goMu.Lock()
		d.closed = true
		unregister := d.unregister
		d.unregister = nil
		d.goMu.Unlock()
		if unregister != nil {
			// The gauges read the routing table, which is closing; and the
			// registry is free again for a DHT made after this one.
			unregister()
		}
		d.stopWatchAL()
		d.cancel()
		d.host.RemoveStreamHandler(ProtocolID)
		d.wg.Wait()
		d.sub.Close()
		d.closeErr = d.kad.Close()
		d.log.Info("dht closed")
	})
	return d.closeErr
}

// goFunc runs fn on a goroutine Close waits for, unless the DHT is closed.
func (d *DHT) goFunc(fn func()) bool {
	d.goMu.Lock()
	defer d.goMu.Unlock()
	if d.closed {
		return false
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		fn()
	}()
	return true
}

func (d *DHT) markReady() {
	d.readyOnce.Do(func() {
		close(d.ready)
		d.log.Info("dht ready", zap.Int("routing_table", d.kad.RoutingTable().Size()))
	})
}

// watch drains the host events, signals readiness and sweeps the routing
// table. It never blocks for long: the event bus blocks emitters on a full
// subscriber.
func (d *DHT) watch() {
	poll := readyPollFast
	pollTimer := time.NewTimer(poll)
	defer pollTimer.Stop()
	pollC := pollTimer.C
	sweep := time.NewTicker(d.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case e, ok := <-d.sub.Out():
			if !ok {
				return
			}
			switch e := e.(type) {
			case event.EvtLocalAddressesUpdated:
				signal(d.addrChanged)
			case event.EvtPeerIdentificationCompleted:
				// A connection with the peer is up: its refusal is
				// over, whoever dialed.
				d.reached(e.Peer)
				if pollC != nil {
					poll = readyPollFast
					pollTimer.Reset(poll)
				}
			}
		case <-pollC:
			if d.kad.RoutingTable().Size() > 0 {
				d.markReady()
				pollC = nil
				continue
			}
			poll = min(2*poll, readyPollSlow)
			pollTimer.Reset(poll)
		case <-sweep.C:
			d.sweep()
		}
	}
}

// rejoinLoop reaches the bootstrap peers, with backoff, whenever the routing
// table is empty: first firstRejoinInterval after the DHT starts (kad-dht
// makes the first attempt itself), then while the table stays empty, at
// doubling intervals up to DefaultMaxRejoinInterval. While the table holds
// peers it looks every DefaultMaxRejoinInterval. kad-dht retries on its own
// only every two minutes, and not at all for a peer it is still connected
// to but dropped from its table (a request that timed out on a busy
// machine): see connectBootstrap.
func (d *DHT) rejoinLoop() {
	backoff := firstRejoinInterval
	t := time.NewTimer(backoff)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		if d.kad.RoutingTable().Size() > 0 {
			backoff = firstRejoinInterval
			t.Reset(DefaultMaxRejoinInterval)
			continue
		}
		d.connectBootstrap()
		t.Reset(backoff)
		backoff = min(2*backoff, DefaultMaxRejoinInterval)
	}
}

// connectBootstrap reaches every bootstrap peer the allowlist still holds,
// while the routing table is empty. Connecting is not enough when the
// connection already exists: kad-dht checks a peer for its table (a DHT
// request it must answer within kad-dht's fixed 10s) when identify
// completes, and a peer that failed that check or a later request is not
// checked again while the connection stays up. So a connected bootstrap
// peer is asked a DHT request here, and added to the table if it answers,
// as kad-dht does with a peer that answers a query.
func (d *DHT) connectBootstrap() {
	boot := d.bootstrapPeers()
	if len(boot) == 0 {
		d.bootErr.Store(&BootstrapError{Err: errNoBootstrapAdmitted})
		signal(d.bootTried)
	}
	for _, ai := range boot {
		if d.kad.RoutingTable().Size() > 0 {
			return
		}
		ctx, cancel := context.WithTimeout(d.ctx, bootstrapDialTimeout)
		had := d.host.Network().Connectedness(ai.ID) != network.NotConnected
		if !had {
			d.clearBackoff(ai.ID)
		}
		err := d.host.Connect(ctx, ai)
		if err != nil {
			err = d.dialFailed(ctx, ai.ID, err)
		} else {
			err = d.kad.Ping(ctx, ai.ID)
			if err != nil && !had && d.host.Network().Connectedness(ai.ID) == network.NotConnected {
				// Dialed, then closed before it answered: how a peer whose
				// gater refuses us looks from here (the refusal travels
				// as a closed connection, docs/PROTOCOL.md).
				err = &p2p.ClosedAtHandshakeError{Self: d.host.ID(), Peer: ai.ID, Err: err}
			}
			if err == nil {
				var added bool
				if added, err = d.kad.RoutingTable().TryAddPeer(ai.ID, true, true); added {
					d.markReady()
				}
			}
		}
		cancel()
		if d.ctx.Err() != nil {
			return
		}
		if err != nil {
			d.bootErr.Store(&BootstrapError{Peer: ai.ID, Err: err})
			signal(d.bootTried)
			d.log.Debug("bootstrap peer unreachable", zap.Stringer("peer", ai.ID), zap.Error(err))
		}
	}
}

// errNoBootstrapAdmitted: every configured bootstrap peer is off the
// allowlist, so none is tried.
var errNoBootstrapAdmitted = errors.New("no bootstrap peer is on the allowlist")

// BootstrapError says why a try to join the DHT through a bootstrap peer
// failed.
type BootstrapError struct {
	Peer peer.ID // "": no bootstrap peer could be tried
	Err  error
}

// Error names the bootstrap peer and what failed.
func (e *BootstrapError) Error() string {
	if e.Peer == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("bootstrap peer %s: %v", e.Peer, e.Err)
}

// Unwrap returns the failure.
func (e *BootstrapError) Unwrap() error { return e.Err }

// BootstrapError returns why the latest try to join through a bootstrap
// peer failed, nil if none has failed: for a caller whose WaitReady gave
// up to say why, rather than only that no peer answered. A DHT that is
// ready may still return the failure of a peer tried before another
// answered.
func (d *DHT) BootstrapError() error {
	if e := d.bootErr.Load(); e != nil {
		return e
	}
	return nil
}

// bootstrapPeers are the configured bootstrap peers the allowlist still
// holds.
func (d *DHT) bootstrapPeers() []peer.AddrInfo {
	var out []peer.AddrInfo
	for _, ai := range d.cfg.Bootstrap {
		if d.admits(ai.ID) {
			out = append(out, ai)
		}
	}
	return out
}

// signal wakes whoever waits on ch, without blocking if it is already awake.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
