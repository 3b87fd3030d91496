package handler

// The fate of each envelope the handler sent: acked, refused, lost with its
// connection; and what follows: a resend after a backoff, a reply parked
// until its dialer is back, or the end.

import (
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// onStatus is the ack (or the failure) of one sent envelope.
func (h *Handler) onStatus(st p2p.Status) {
	ex := h.inflight[st.MsgID]
	if ex == nil {
		return
	}
	delete(h.inflight, st.MsgID)
	if ex.msgID != st.MsgID || ex.ended() {
		return // an exchange that ended without waiting for this ack
	}
	ex.msgID = 0
	if st.OK {
		ex.sentOK = true
		h.acked(ex)
		return
	}
	reason, policy := classify(st.Reason)
	var err error = &AckError{Reason: st.Reason, Err: st.Err}
	if reason == ReasonUnanswered {
		err = fmt.Errorf("%w (%w)", ErrUnanswered, err)
	}
	if ce := h.log.Check(zap.DebugLevel, "send refused"); ce != nil {
		ce.Write(zap.Stringer("peer", ex.p.id), zap.Stringer("exchange", ex.id), zap.Int("attempt", ex.attempts), zap.Error(err))
	}
	ex.lastReason, ex.lastErr = reason, err
	if ex.role == Responder && st.Reason == p2p.ReasonUnknownExchange {
		h.park(ex)
		return
	}
	switch policy {
	case fault:
		h.fault(ex.p, reason, err)
		return
	case terminal:
		h.end(ex, reason, err)
		return
	}
	if reason == ReasonDialFailed {
		if ex.role == Dialer && h.resolver != nil && !ex.reResolved && ex.attempts < h.cfg.MaxAttempts {
			ex.reResolved = true
			h.resolve(ex)
			return
		}
		if st.Reason == p2p.ReasonNotConnected && ex.role == Dialer && ex.addr == nil && h.resolver == nil {
			h.end(ex, reason, err) // nowhere to dial, ever
			return
		}
	}
	h.retry(ex)
}

// acked: the peer's node delivered our envelope to its handler.
func (h *Handler) acked(ex *exchange) {
	if ex.role == Dialer && ex.kind == KindRequest {
		// The deadline runs from the first ack: resending after a lost
		// connection must not extend it.
		if ex.replyBy.IsZero() {
			ex.replyBy = time.Now().Add(h.cfg.ReplyTimeout)
		}
		ex.state = StateAwaitReply
		left := time.Until(ex.replyBy)
		if left <= 0 {
			h.replyLate(ex)
			return
		}
		h.setTimer(ex, left, dueReply)
		return
	}
	h.end(ex, ReasonOK, nil)
}

// retry resends after a backoff, or gives up with the last failure once
// MaxAttempts sends have been made.
func (h *Handler) retry(ex *exchange) {
	if ex.attempts >= h.cfg.MaxAttempts {
		if ex.kind == KindRequest && ex.replyAccepted {
			// A reply came after all (the request's ack was lost): wait
			// for the loop to take it, as replyLate does.
			h.replyLate(ex)
			return
		}
		h.end(ex, ex.lastReason, ex.lastErr)
		return
	}
	h.backoff(ex)
}

// backoff waits BackoffBase * 2^(attempts-1), capped at BackoffMax, of which
// the second half is random, then resends.
func (h *Handler) backoff(ex *exchange) {
	ex.state = StateBackoff
	d := h.cfg.BackoffBase << min(ex.attempts-1, 30)
	if d <= 0 || d > h.cfg.BackoffMax {
		d = h.cfg.BackoffMax
	}
	d = d/2 + rand.N(d/2+1)
	h.setTimer(ex, d, dueResend)
}

// park holds a reply that reached a process which did not ask for it:
// its request came from a process sharing the dialer's key, on a
// connection that has since closed, or from the dialer's previous life.
// A dialer that lost its connection resends its request when it is back,
// and the reply goes then (onRequest); one that never does is gone, and
// the exchange ends when the dialer would have given up waiting. One that
// came back while the reply was on its way (askedAgain) gets it now, on
// the stream of its latest request: it waits for that reply and will not
// ask again, so parked the reply would wait ReplyTimeout for nothing.
func (h *Handler) park(ex *exchange) {
	if ex.attempts >= h.cfg.MaxAttempts {
		// Sent as often as any message may be: a peer that refuses
		// every reply and asks again must not keep it going for ever.
		h.end(ex, ex.lastReason, ex.lastErr)
		return
	}
	if ex.askedAgain {
		h.transmit(ex)
		return
	}
	ex.state = StateBackoff
	h.setTimer(ex, h.cfg.ReplyTimeout, dueParked)
}

// lost: the connection went down while a request awaited its reply. The
// request was delivered, but the responder needs a connection to reply on:
// resend it, which the responder recognises as a duplicate.
func (h *Handler) lost(ex *exchange) {
	ex.lastReason, ex.lastErr = ReasonDisconnected, ErrDisconnected
	h.stopTimer(ex)
	h.retry(ex)
}
