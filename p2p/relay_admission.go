package p2p

import (
	"errors"
	"net"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
)

// Pending relayed handshakes.
//
// An inbound relayed connection is a circuit-relay STOP stream that a relay
// opened on its own connection to the node; the node's upgrader then runs
// multistream-select and Noise inside it, holding one of the transient
// inbound connection slots (limitTransientConns, shared with every direct
// handshake) until Noise proves a key or the handshake timeout
// (Config.HandshakeTimeout, 15 s by default) ends it.
// Nothing about such a handshake can be charged: the IP is the relay's, the
// relay may be honest and merely carrying a hostile member's circuit, and
// the source it announces may be an honest member a hostile relay names.
// Charging either would let one hostile member get an honest one cut off.
// So instead of charging, the node bounds how many relayed handshakes may
// be in progress at once: per source announced through a relay, per relay,
// and in total. A handshake counts from the moment the resource manager
// opens its connection scope until the scope gets its peer (Noise proved a
// key and the gater admitted it) or ends (refused, failed, timed out).
//
// Why these numbers:
//   - per source and relay, 2: an honest peer has one handshake in flight
//     to a node, two while a redial overlaps an attempt that is failing.
//     Through an honest relay, which authenticates the source it announces,
//     a hostile member can so hold only its own two slots and never delay
//     another member's circuits through the same relay.
//   - per relay, 8: one relay announcing made-up sources (a hostile member
//     acting as a relay) holds at most half the total, so honest relays
//     keep room; an honest hub relay's burst of reconnections after a
//     restart goes through 8 at a time (handshakes over a relay take a few
//     round trips) and the rest are refused and redialed.
//   - in total, 16: a quarter of the 64 transient inbound slots, so relayed
//     handshakes, however stalled, never keep a direct handshake out.
const (
	relayPendingPerSource = 2
	relayPendingPerRelay  = 8
	relayPendingTotal     = 16
)

// errRelayBusy is the resource manager's refusal of a relayed connection
// past the limits above.
var errRelayBusy = errors.New("p2p: too many relayed handshakes in progress")

// relayPending counts the inbound relayed handshakes in progress.
type relayPending struct {
	// refuse reports a refusal (gater.refuse); nil reports nothing.
	refuse func(Refused)

	mu       sync.Mutex
	bySource map[relaySource]int
	byRelay  map[peer.ID]int
	total    int
	// hint is the source the gater's InterceptAccept read from the circuit
	// connection it just let through. go-libp2p opens the connection's
	// scope right after, on the same goroutine, from the remote multiaddr
	// alone (which names the relay but not the source): open takes the
	// hint to learn the source. The circuit transport has one listener,
	// whose accept loop makes both calls in turn, so a hint never belongs
	// to another connection; one that names another relay is ignored and
	// the connection is counted under an unknown source, still per relay.
	hint relaySource
}

// relaySource is one source announced through one relay.
type relaySource struct {
	relay, source peer.ID
}

// noted records the source of the relayed connection the gater just let
// through, for the open that follows.
func (r *relayPending) noted(relay, source peer.ID) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.hint = relaySource{relay, source}
	r.mu.Unlock()
}

// open counts a new inbound handshake through relay, or refuses it past a
// limit. The returned release uncounts it, once, however often called.
func (r *relayPending) open(relay peer.ID) (release func(), err error) {
	r.mu.Lock()
	k := relaySource{relay: relay}
	if r.hint.relay == relay {
		k.source = r.hint.source
	}
	r.hint = relaySource{}
	if r.bySource[k] >= relayPendingPerSource || r.byRelay[relay] >= relayPendingPerRelay || r.total >= relayPendingTotal {
		r.mu.Unlock()
		if r.refuse != nil {
			// The relay is the one proven key here: the source is
			// only what the relay says.
			r.refuse(Refused{Peer: relay, Reason: RefusedRelayBusy})
		}
		return nil, errRelayBusy
	}
	if r.bySource == nil {
		r.bySource = make(map[relaySource]int)
		r.byRelay = make(map[peer.ID]int)
	}
	r.bySource[k]++
	r.byRelay[relay]++
	r.total++
	r.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { r.done(k) }) }, nil
}

// done uncounts one handshake of k.
func (r *relayPending) done(k relaySource) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bySource[k]--; r.bySource[k] <= 0 {
		delete(r.bySource, k)
	}
	if r.byRelay[k.relay]--; r.byRelay[k.relay] <= 0 {
		delete(r.byRelay, k.relay)
	}
	r.total--
}

// pendingScope is a relayed connection's scope, uncounting its handshake
// when it gets its peer or ends. Nothing in go-libp2p v0.51 type-asserts a
// ConnManagementScope (the upgrader, swarm and muxers use its interface
// only), so wrapping it changes nothing else.
type pendingScope struct {
	network.ConnManagementScope
	release func()
}

// SetPeer is called once Noise proved the key and the gater admitted it:
// the handshake is over.
func (s *pendingScope) SetPeer(p peer.ID) error {
	s.release()
	return s.ConnManagementScope.SetPeer(p)
}

// Done ends the connection, admitted or not.
func (s *pendingScope) Done() {
	s.release()
	s.ConnManagementScope.Done()
}

// announcedSource is the source peer a relay announced for an inbound
// circuit connection: the peer the relay says dialed the node through it.
// go-libp2p's circuit client exposes it only as the connection's
// RemoteAddr (a *client.NetAddr). ok is false for anything else.
func announcedSource(c any) (peer.ID, bool) {
	a, ok := c.(interface{ RemoteAddr() net.Addr })
	if !ok {
		return "", false
	}
	na, ok := a.RemoteAddr().(*client.NetAddr)
	if !ok {
		return "", false
	}
	id, err := peer.Decode(na.Remote)
	if err != nil {
		return "", false
	}
	return id, true
}
