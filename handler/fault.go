package handler

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// Peer identification on error: faults end a peer's exchanges and its
// connection.

// fault: the peer misbehaved (an ack that never came, a protocol violation).
// It is reported and disconnected, and its active exchanges fail with the
// reason; queued ones will start on a fresh connection.
func (h *Handler) fault(ps *peerState, reason Reason, err error) {
	h.outcomes.Push(&Error{Peer: ps.id, Err: err, Disconnected: true}, false)
	if ps.conn != connClosing {
		e, _ := h.cfg.Node.Allowlist.Get(ps.id)
		h.log.Info("faulty peer: disconnecting", zap.Stringer("peer", ps.id), zap.String("peer_name", e.Name),
			zap.String("reason", string(reason)), zap.Error(err))
		h.disconnect(ps, time.Time{}) // every connection: the peer is faulty
	}
	for _, ex := range ps.exchanges() {
		h.end(ex, reason, err)
	}
}

// unexpected: a peer broke the exchange protocol. It costs the peer a
// token of its misbehaviour budget, as protocol abuse does in the p2p layer,
// and makes it faulty; an exhausted budget cuts it off.
func (h *Handler) unexpected(from peer.ID, err error) {
	v := h.node.Limiter().SpendPeer(string(from), ratelimit.ProtocolViolation)
	ps := h.peer(from)
	h.fault(ps, ReasonUnexpectedMessage, err)
	if v.Exhausted {
		h.prio.Push(&ConnectionLimit{Peer: from, Reason: ratelimit.ProtocolViolation, Until: v.Until}, false)
		h.cutOff(ps, fmt.Errorf("%w until %s", ErrRateLimited, v.Until.Format(time.RFC3339)))
	}
	h.gc(ps)
}

// cutOff fails every exchange with a peer the rate limiter banned, queued
// ones included: the node refuses the peer until the ban ends.
func (h *Handler) cutOff(ps *peerState, err error) {
	for _, ex := range ps.queue.drain() {
		h.end(ex, ReasonRateLimited, err)
	}
	for _, ex := range ps.exchanges() {
		h.end(ex, ReasonRateLimited, err)
	}
}

// removedCmd: peers were taken off the allowlist.
type removedCmd struct{ peers []peer.ID }

// allowlistChanged is the handler's subscription to the allowlist. It runs
// on the goroutine that changed the list, and applies itself as an API call
// does.
func (h *Handler) allowlistChanged(c allowlist.Change) {
	if len(c.Removed) == 0 {
		return
	}
	ids := make([]peer.ID, len(c.Removed))
	for i, e := range c.Removed {
		ids[i] = e.ID
	}
	// ErrClosed: the handler is closing, and fails its exchanges itself.
	_ = h.post(removedCmd{ids})
}

// removed fails every exchange with peers taken off the allowlist, queued
// ones included: without it a request awaiting its reply would wait for
// its reply timeout, since nothing else ends it (the peer can no longer
// reach us to answer).
func (h *Handler) removed(ids []peer.ID) {
	for _, id := range ids {
		ps, ok := h.peers[id]
		if !ok {
			continue
		}
		h.log.Info("peer removed from the allowlist: ending its exchanges", zap.Stringer("peer", id))
		err := fmt.Errorf("%w: %s", ErrPeerRemoved, id)
		for _, ex := range ps.queue.drain() {
			h.end(ex, ReasonPeerRemoved, err)
		}
		for _, ex := range ps.exchanges() {
			h.end(ex, ReasonPeerRemoved, err)
		}
		h.gc(ps)
	}
}
