package p2p

import (
	"net/netip"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"
)

// RefusalReason says why the gater refused an inbound connection.
type RefusalReason string

// The reasons an inbound connection is refused. The first two are also the
// misbehaviour reasons (ratelimit.UnknownPeer, ratelimit.PeerIPMismatch)
// the refusal is charged under.
const (
	// RefusedUnknownPeer: the Noise-proved key is not on the allowlist.
	RefusedUnknownPeer RefusalReason = "unknown_peer"
	// RefusedIPMismatch: the key is listed, but its entry's IP binding does
	// not admit the address it came from.
	RefusedIPMismatch RefusalReason = "peer_ip_mismatch"
	// RefusedIPNotAllowlisted: no allowlist entry admits the source IP, so
	// the connection was refused at accept, before any handshake: the peer
	// ID is unknown.
	RefusedIPNotAllowlisted RefusalReason = "ip_not_allowlisted"
	// RefusedPeerBanned: the key is cut off by the rate limiter.
	RefusedPeerBanned RefusalReason = "peer_banned"
	// RefusedIPBanned: the source IP is cut off by the rate limiter.
	RefusedIPBanned RefusalReason = "ip_banned"
	// RefusedTooManyConnections: the key already holds as many connections
	// as a peer may.
	RefusedTooManyConnections RefusalReason = "too_many_connections"
	// RefusedRelayNotAllowed: the key came through a circuit relay, but
	// its entry binds it to IPs without allowing relays ("relay: true"),
	// or the relay is no longer a member. Charged as peer_ip_mismatch,
	// to the key only.
	RefusedRelayNotAllowed RefusalReason = "relay_not_allowed"
	// RefusedRelaySourceMismatch: the key Noise proved on a relayed
	// connection is not the source the relay announced for it. Charged to
	// nobody (docs/security.md §7); Peer is the proved key.
	RefusedRelaySourceMismatch RefusalReason = "relay_source_mismatch"
	// RefusedRelayBusy: as many relayed handshakes as the node allows are
	// in progress, from the announced source through that relay, through
	// that relay, or in total (relay_admission.go). Refused before any
	// handshake and charged to nobody; Peer is the relay.
	RefusedRelayBusy RefusalReason = "relay_busy"
)

// refusalReasons lists every RefusalReason, for the metric's labels.
var refusalReasons = []RefusalReason{
	RefusedUnknownPeer, RefusedIPMismatch, RefusedIPNotAllowlisted,
	RefusedPeerBanned, RefusedIPBanned, RefusedTooManyConnections,
	RefusedRelayNotAllowed, RefusedRelaySourceMismatch, RefusedRelayBusy,
}

// Refused reports inbound connections the gater refused. Peer is the
// Noise-proved key, empty when the connection was refused at accept
// (RefusedIPNotAllowlisted, or RefusedIPBanned before the handshake), and
// the relay for RefusedRelayBusy.
//
// One event may stand for several refusals of the same peer, IP and reason:
// the first is reported at once, later ones within RefusalInterval are
// counted and reported together when it has passed. Count says how many; the
// counts of all Refused events add up to the
// bitvmx_p2p_connections_refused_total metric.
type Refused struct {
	Peer   peer.ID
	IP     netip.Addr
	Reason RefusalReason
	Count  uint64
}

func (Refused) event() {}

// RefusalInterval is the least time between two Refused events (and their
// warning logs) for the same peer, IP and reason.
const RefusalInterval = 10 * time.Second

// maxRefusalKeys bounds the refusals being aggregated: past it, a refusal
// of a new peer or IP is counted under its reason alone (a Refused without
// Peer and IP), so that a flood from many addresses costs no memory.
const maxRefusalKeys = 1024

type refusalKey struct {
	peer   peer.ID
	ip     netip.Addr
	reason RefusalReason
}

type refusalState struct {
	last    time.Time // when the last event for the key was emitted
	pending uint64    // refusals since then, not yet reported
}

// refusals counts, reports and logs the gater's refusals, at most one event
// and one warning per key and RefusalInterval.
type refusals struct {
	emit    func(Refused)
	log     *zap.Logger
	metrics *metrics
	name    func(peer.ID) string // the allowlist's name for a peer, for logs

	mu   sync.Mutex
	keys map[refusalKey]*refusalState
}

// refuse records one refusal.
func (r *refusals) refuse(ev Refused, now time.Time) {
	r.metrics.refused(ev.Reason)
	k := refusalKey{ev.Peer, ev.IP, ev.Reason}
	r.mu.Lock()
	st, ok := r.keys[k]
	if !ok && len(r.keys) >= maxRefusalKeys {
		k = refusalKey{reason: ev.Reason}
		st, ok = r.keys[k]
	}
	if !ok {
		if r.keys == nil {
			r.keys = make(map[refusalKey]*refusalState)
		}
		st = &refusalState{}
		r.keys[k] = st
	} else if now.Sub(st.last) < RefusalInterval {
		st.pending++
		r.mu.Unlock()
		return
	}
	count := st.pending + 1
	st.last, st.pending = now, 0
	r.mu.Unlock()
	r.report(Refused{Peer: k.peer, IP: k.ip, Reason: k.reason, Count: count})
}

// flush reports the refusals counted and not yet reported whose interval
// has passed (all of them with all set, at shutdown), and forgets keys idle
// for a whole interval.
func (r *refusals) flush(now time.Time, all bool) {
	var out []Refused
	r.mu.Lock()
	for k, st := range r.keys {
		due := all || now.Sub(st.last) >= RefusalInterval
		switch {
		case st.pending > 0 && due:
			out = append(out, Refused{Peer: k.peer, IP: k.ip, Reason: k.reason, Count: st.pending})
			st.last, st.pending = now, 0
		case st.pending == 0 && due:
			delete(r.keys, k)
		}
	}
	r.mu.Unlock()
	for _, ev := range out {
		r.report(ev)
	}
}

// report emits ev and logs it as a warning: a refusal is something an
// operator on either side has to act on.
func (r *refusals) report(ev Refused) {
	fields := []zap.Field{zap.String("reason", string(ev.Reason)), zap.Uint64("count", ev.Count)}
	if ev.Peer != "" {
		fields = append(fields, zap.Stringer("peer", ev.Peer))
		if n := r.name(ev.Peer); n != "" {
			fields = append(fields, zap.String("peer_name", n))
		}
	}
	if ev.IP.IsValid() {
		fields = append(fields, zap.Stringer("ip", ev.IP))
	}
	r.log.Warn("connection refused", fields...)
	r.emit(ev)
}

// runRefusals reports delayed refusal counts every RefusalInterval until
// the node stops, then reports what is left.
func (n *Node) runRefusals() {
	defer n.wg.Done()
	t := time.NewTicker(RefusalInterval)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			n.refusals.flush(now, false)
		case <-n.ctx.Done():
			n.refusals.flush(time.Now(), true)
			return
		}
	}
}
