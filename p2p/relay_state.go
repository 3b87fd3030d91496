package p2p

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// RelayStatus is what a node knows of its relaying at one moment: as a
// client of its static relays, as a relay itself, and of hole punching.
type RelayStatus struct {
	// Relays are the static relays (Config.Relays), in order.
	Relays []RelayPeer
	// Reservations is how many reservations the node holds on them now.
	Reservations int
	// Service is whether the node is a relay for its members; Served and
	// Circuits how many reservations it holds for them and how many
	// circuits it carries now; Refused how many reservation and circuit
	// requests it refused.
	Service  bool
	Served   int
	Circuits int
	Refused  uint64
	// HolePunching is whether DCUtR is on; HolePunchOK and HolePunchFailed
	// count the attempts this node made, at either end of a punch (the
	// HolePunch events), that ended in a direct connection or did not.
	HolePunching    bool
	HolePunchReady  bool
	HolePunchOK     uint64
	HolePunchFailed uint64
}

// RelayPeer is one static relay.
type RelayPeer struct {
	Peer  peer.ID
	Addrs []ma.Multiaddr
	// Connected is whether the node has a connection to it now.
	Connected bool
}

// RelayReservations reports that the number of reservations the node holds
// on its static relays changed: Count is the new number. A node with
// Count 0 cannot be dialed through its relays.
type RelayReservations struct {
	Count int
}

func (RelayReservations) event() {}

// HolePunch reports the end of a hole punch attempt on a relayed
// connection with Peer, by either end (the one that received the relayed
// connection starts the punch, the other answers it; go-libp2p tries a
// failed punch up to 3 times, one event each): OK when a direct connection
// now exists beside the relayed one, otherwise Err says why not.
type HolePunch struct {
	Peer peer.ID
	OK   bool
	Err  string
}

func (HolePunch) event() {}

// HolePunchReady reports that hole punching can start: the node has
// learned a public address of its own from what its peers observe (its
// relays, typically). A relayed connection accepted before it is not
// upgraded; later ones are.
type HolePunchReady struct{}

func (HolePunchReady) event() {}

// relayState counts what the relay machinery does, for RelayStatus and the
// bitvmx_p2p_relay_* and bitvmx_p2p_holepunch_* metrics. go-libp2p reports
// to it through the tracers below.
type relayState struct {
	service      bool
	holePunching bool
	relays       []peer.AddrInfo
	// reserving: AutoRelay runs, asking the static relays for
	// reservations (relayHostOptions).
	reserving bool
	charge    func(peer.ID, ratelimit.Reason)
	push      func(Event)
	metrics   prometheus.Registerer
	// marks is the host's connection manager, which learns the
	// reservations (relay_keep.go).
	marks *relayConnMgr

	mu           sync.Mutex // orders RelayReservations events
	reservations atomic.Int64
	served       atomic.Int64
	circuits     atomic.Int64
	refused      atomic.Uint64
	hpOK, hpFail atomic.Uint64
	hpReady      atomic.Bool

	m    *relayMetrics
	cols []prometheus.Collector // registered in metrics
}

type relayMetrics struct {
	reservations prometheus.Gauge
	served       prometheus.Gauge
	circuits     prometheus.Gauge
	requests     *prometheus.CounterVec
	holePunch    map[bool]prometheus.Counter
}

// newRelayState builds the counters and, with reg, registers the metrics;
// relayedConns counts the node's relayed connections when scraped.
// push emits the RelayReservations and HolePunch events.
func newRelayState(cfg Config, charge func(peer.ID, ratelimit.Reason), push func(Event), relayedConns func() int) (*relayState, error) {
	rs := &relayState{
		service:      cfg.Relay.Enabled,
		holePunching: cfg.HolePunching,
		relays:       cfg.relays,
		reserving:    len(cfg.relays) > 0 && cfg.Reachability != network.ReachabilityPublic,
		charge:       charge,
		push:         push,
		metrics:      cfg.Metrics,
		marks:        newRelayConnMgr(),
	}
	if cfg.Metrics == nil {
		return rs, nil
	}
	const ns, sub = "bitvmx", "p2p"
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: ns, Subsystem: sub, Name: name, Help: help}
	}
	hp := prometheus.NewCounterVec(prometheus.CounterOpts(opts("holepunch_total",
		"Hole punch attempts, by either end, by result: ok (a direct connection opened beside the relayed one) or failed.")), []string{"result"})
	m := &relayMetrics{
		reservations: prometheus.NewGauge(prometheus.GaugeOpts(opts("relay_reservations",
			"Reservations this node holds on its static relays."))),
		served: prometheus.NewGauge(prometheus.GaugeOpts(opts("relay_served_reservations",
			"Reservations this relay holds for members."))),
		circuits: prometheus.NewGauge(prometheus.GaugeOpts(opts("relay_circuits",
			"Circuits this relay carries between members now."))),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts(opts("relay_requests_total",
			"Reservation and circuit requests this relay handled, by kind (reserve, connect) and status (ok or the refusal).")), []string{"kind", "status"}),
		holePunch: map[bool]prometheus.Counter{true: hp.WithLabelValues("ok"), false: hp.WithLabelValues("failed")},
	}
	relayed := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("relayed_connections",
		"Open connections of this node that go through a circuit relay.")), func() float64 { return float64(relayedConns()) })
	for _, c := range []prometheus.Collector{m.reservations, m.served, m.circuits, m.requests, hp, relayed} {
		if err := cfg.Metrics.Register(c); err != nil {
			rs.unregister()
			return nil, err
		}
		rs.cols = append(rs.cols, c)
	}
	rs.m = m
	return rs, nil
}

// unregister removes the collectors registered so far, when the node could
// not be built after all.
func (rs *relayState) unregister() {
	for _, c := range rs.cols {
		rs.metrics.Unregister(c)
	}
	rs.cols = nil
}

func (rs *relayState) addGauge(v *atomic.Int64, g func(*relayMetrics) prometheus.Gauge, d int64) {
	n := v.Add(d)
	if rs.m != nil {
		g(rs.m).Set(float64(n))
	}
}

// status fills the counters of a RelayStatus; the caller adds what the
// host knows.
func (rs *relayState) status() RelayStatus {
	return RelayStatus{
		Reservations:    int(rs.reservations.Load()),
		Service:         rs.service,
		Served:          int(rs.served.Load()),
		Circuits:        int(rs.circuits.Load()),
		Refused:         rs.refused.Load(),
		HolePunching:    rs.holePunching,
		HolePunchReady:  rs.hpReady.Load(),
		HolePunchOK:     rs.hpOK.Load(),
		HolePunchFailed: rs.hpFail.Load(),
	}
}

// watchHolePunchReady emits HolePunchReady once go-libp2p's hole punching
// service starts serving, which it does once the node knows a public
// address of its own. It runs until then or until the node closes.
func (n *Node) watchHolePunchReady() error {
	if !n.cfg.HolePunching {
		return nil
	}
	sub, err := n.host.EventBus().Subscribe(new(event.EvtLocalProtocolsUpdated))
	if err != nil {
		return fmt.Errorf("p2p: hole punching: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer sub.Close()
		ready := func() bool {
			if slices.Contains(n.host.Mux().Protocols(), holepunch.Protocol) {
				n.relay.hpReady.Store(true)
				n.relay.push(HolePunchReady{})
				return true
			}
			return false
		}
		if ready() {
			return
		}
		for {
			select {
			case <-sub.Out():
				if ready() {
					return
				}
			case <-n.ctx.Done():
				return
			}
		}
	}()
	return nil
}

// RelayStatus reports the node's relays, reservations, relay service and
// hole punching.
func (n *Node) RelayStatus() RelayStatus {
	st := n.relay.status()
	for _, r := range n.relay.relays {
		st.Relays = append(st.Relays, RelayPeer{Peer: r.ID, Addrs: r.Addrs,
			Connected: n.host.Network().Connectedness(r.ID) == network.Connected})
	}
	return st
}

// relayedConns counts the node's open relayed connections.
func (n *Node) relayedConns() int {
	if !n.started.Load() {
		return 0
	}
	k := 0
	for _, c := range n.host.Network().Conns() {
		if isRelayed(c.RemoteMultiaddr()) {
			k++
		}
	}
	return k
}

// addCircuitAddrs records, for every allowlisted peer, an address through
// each static relay, so that a member reachable only through a relay (the
// hub deployment) is dialed there with no address given: go-libp2p tries
// the peer's direct addresses first and the relayed ones after a short
// delay. Called at start and whenever the allowlist changes.
func (n *Node) addCircuitAddrs() {
	if len(n.relay.relays) == 0 || !n.started.Load() {
		return
	}
	ps := n.host.Peerstore()
	isRelay := make(map[peer.ID]bool, len(n.relay.relays))
	for _, r := range n.relay.relays {
		isRelay[r.ID] = true
		ps.AddAddrs(r.ID, r.Addrs, peerstore.PermanentAddrTTL)
	}
	for _, e := range n.cfg.Allowlist.Entries() {
		if e.ID == n.host.ID() || isRelay[e.ID] || !e.AllowsRelayed() {
			continue
		}
		for _, r := range n.relay.relays {
			circuit := ma.StringCast("/p2p/" + r.ID.String() + "/p2p-circuit")
			for _, a := range r.Addrs {
				ps.AddAddr(e.ID, a.Encapsulate(circuit), peerstore.PermanentAddrTTL)
			}
		}
	}
}

// RelayAddrs are the addresses through which this node can be dialed via
// its static relays, each ending in /p2p-circuit/p2p/<id>: what it
// advertises (in its DHT record) besides its direct addresses.
func (n *Node) RelayAddrs() []ma.Multiaddr {
	var out []ma.Multiaddr
	if n.cfg.Reachability == network.ReachabilityPublic {
		return nil
	}
	suffix := ma.StringCast("/p2p/" + n.host.ID().String())
	for _, r := range n.relay.relays {
		circuit := ma.StringCast("/p2p/" + r.ID.String() + "/p2p-circuit")
		for _, a := range r.Addrs {
			out = append(out, a.Encapsulate(circuit).Encapsulate(suffix))
		}
	}
	return out
}
