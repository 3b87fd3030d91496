package handler

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// The responder's side of the FSM: requests and messages received.

// onRequest starts a responder exchange, unless the request is one already
// received (the dialer resent it), which is not delivered again.
func (h *Handler) onRequest(from peer.ID, id ExchangeID, data []byte) {
	ps := h.peer(from)
	h.activity(ps)
	if ex := ps.inbound[id]; ex != nil {
		if ex.state == StateBackoff {
			// The dialer is back, so our reply can go now.
			h.timers.cancel(ex.timer)
			ex.timer = nil
			h.transmit(ex)
		}
		return
	}
	now := time.Now()
	if h.seen.has(from, id, now) {
		h.settle(ps, true)
		return
	}
	h.seen.add(from, id, now)
	ex := &exchange{id: id, p: ps, role: Responder, kind: KindRequest, state: StateDelivered, start: now}
	ps.inbound[id] = ex
	h.active++
	h.setTimer(ex, h.cfg.ReplyTimeout, func() {
		h.end(ex, ReasonReplyTimeout, fmt.Errorf("%w: the application did not respond within %s", ErrReplyTimeout, h.cfg.ReplyTimeout))
	})
	h.pending.add(from, id)
	h.deliver(Request{From: from, Exchange: id, Data: data})
}

// onMessage delivers a one-way message once.
func (h *Handler) onMessage(from peer.ID, id ExchangeID, data []byte) {
	ps := h.peer(from)
	h.activity(ps)
	now := time.Now()
	if !h.seen.has(from, id, now) {
		h.seen.add(from, id, now)
		h.deliver(Message{From: from, Exchange: id, Data: data})
	}
	// The sender learns last that the message arrived (from our node's
	// ack), so it is the one to disconnect.
	h.settle(ps, true)
}

// respond sends the application's reply to a request it received. Response
// has claimed the request (see pending), so it is answered once; it may
// have ended meanwhile (timed out, failed), which its Outcome reported.
func (h *Handler) respond(from peer.ID, id ExchangeID, wire []byte) {
	var ex *exchange
	if ps := h.peers[from]; ps != nil {
		ex = ps.inbound[id]
	}
	if ex == nil || ex.state != StateDelivered {
		return
	}
	h.timers.cancel(ex.timer)
	ex.timer = nil
	ex.wire = wire
	h.transmit(ex)
}
