package handler

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// The responder's side of the FSM: requests and messages received.

// onRequest starts a responder exchange, unless the request is one already
// received (the dialer resent it), which is not delivered again: it is
// answered with the stored reply when there is one.
func (h *Handler) onRequest(from peer.ID, id ExchangeID, data []byte, origin p2p.Origin) {
	ps := h.peer(from)
	h.activity(ps)
	if ex := ps.inbound[id]; ex != nil {
		ex.origin = origin // the dialer's latest connection
		switch {
		case ex.state == StateBackoff:
			// The dialer is back, so our reply can go now.
			h.stopTimer(ex)
			h.transmit(ex)
		case ex.wire != nil:
			// The reply is on its way, maybe to a process that did not
			// ask (park): should it be refused, it goes again at once.
			ex.askedAgain = true
		}
		return
	}
	now := time.Now()
	if h.seen.record(from, id, now) {
		if wire := h.storedReply(from, id); wire != nil {
			// Answered already (maybe by a previous process): the reply
			// was lost on its way, or the dialer restarted. Send it again,
			// as a replay: the request's exchange has ended, with its
			// Outcome, and this one ends with none (end).
			ex := &exchange{id: id, p: ps, role: Responder, kind: KindRequest, state: StateDelivered, replay: true,
				start: now, wire: wire, origin: origin}
			ps.inbound[id] = ex
			h.held.Add(1)
			h.hold(ex, len(wire))
			h.active++
			h.transmit(ex)
			return
		}
		h.settle(ps, true)
		return
	}
	if h.durable() && !h.arrived(from, id) {
		h.dur.take(inKey{from, id}, len(data)) // not counted by accept (it raced a resend)
	}
	ex := h.receive(ps, id, origin)
	ex.request = Request{From: from, Exchange: id, Data: data, Deadline: ex.tm.at}
	if !h.durable() {
		h.hold(ex, len(data)) // with a store, its inbox counts it until answered
	}
	h.deliver(&ex.request)
}

// receive starts the responder exchange of a request given to the
// application, which has Config.ReplyTimeout to answer it: until ex.tm.at,
// its Request's Deadline.
func (h *Handler) receive(ps *peerState, id ExchangeID, origin p2p.Origin) *exchange {
	ex := &exchange{id: id, p: ps, role: Responder, kind: KindRequest, state: StateDelivered, start: time.Now(), origin: origin}
	ps.inbound[id] = ex
	h.held.Add(1)
	h.active++
	h.setTimer(ex, h.cfg.ReplyTimeout, dueAnswer)
	h.pending.add(ex)
	return ex
}

// onMessage delivers a one-way message once.
func (h *Handler) onMessage(from peer.ID, id ExchangeID, data []byte) {
	ps := h.peer(from)
	h.activity(ps)
	// A message the application holds unacknowledged is no new one, even
	// once its dedupe record is gone; neither is recorded again.
	if !(h.durable() && h.holds(from, id)) && !h.seen.record(from, id, time.Now()) {
		if h.durable() {
			if !h.arrived(from, id) {
				h.dur.take(inKey{from, id}, len(data))
			}
			if h.cfg.AutoAck {
				h.dur.release(inKey{from, id})
				h.handled(from, id, KindMessage)
			} else {
				h.dur.unacked[inKey{from, id}] = true
			}
		}
		h.deliver(&Message{From: from, Exchange: id, Data: data})
	}
	// The sender learns last that the message arrived (from our node's
	// ack), so it is the one to disconnect.
	h.settle(ps, true)
}

// respond sends the application's reply to the request of responder
// exchange ex. Response has claimed the request (see pending), so it is
// answered once; it may have ended meanwhile (timed out, failed), which
// its Outcome reported.
func (h *Handler) respond(ex *exchange, wire []byte) {
	if ex.state != StateDelivered {
		return
	}
	from, id := ex.p.id, ex.id
	h.stopTimer(ex)
	ex.wire = wire
	held := len(wire)
	if h.durable() {
		held += len(ex.request.Data) // the inbox's until now (release)
	}
	h.hold(ex, held)
	if h.durable() {
		h.keepReply(inKey{from, id}, len(wire))
		h.dur.release(inKey{from, id})
	}
	h.transmit(ex)
}

// unanswered: a received request ended without the application's reply.
// Unless the handler is closing (with a store, the request is then
// delivered again at the next start), it counts as handled, and a resend
// of it is refused unanswered while its ID is remembered (accept): it is
// not delivered again, and no reply will come. The caller holds mu.
func (h *Handler) unanswered(p peer.ID, id ExchangeID, reason Reason) {
	if reason == ReasonClosed {
		return
	}
	h.seen.markUnanswered(p, id)
	if h.durable() {
		h.dur.release(inKey{p, id})
		h.handled(p, id, KindRequest)
	}
}

// hold counts size more bytes that responder exchange ex keeps in memory
// against its peer's inbox bounds (inboxFull), until it ends (unhold): the
// request's payload, which its exchange keeps (ex.request), and, once
// answered, the reply's envelope, which waits for the peer's ack, resent
// until then (MaxAttempts) or parked. Without a store an exchange counts
// from its start; with one the store's inbox counts a request until it is
// answered, and its exchange from then on (respond), or from a stored
// reply read back for a resend (onRequest). A peer whose node takes our
// replies slowly or never, while it asks for more, thus holds at most
// MaxInboxPerPeer of them, and about MaxInboxBytesPerPeer. The caller holds
// mu.
func (h *Handler) hold(ex *exchange, size int) {
	ps := ex.p
	if !ex.holding {
		ex.holding = true
		ps.held.n++
	}
	ex.holds += size
	ps.held.bytes += size
	h.heldBytes.Add(int64(size))
}

// unhold stops counting what ended exchange ex held. The caller holds mu.
func (h *Handler) unhold(ex *exchange) {
	if !ex.holding {
		return
	}
	ps := ex.p
	ps.held.n--
	ps.held.bytes -= ex.holds
	h.heldBytes.Add(-int64(ex.holds))
	ex.holding, ex.holds = false, 0
}
