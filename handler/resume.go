package handler

import (
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// redeliverOutcome hands out again the Reply and Outcome of an exchange
// that ended in a previous life whose application never acknowledged them.
// The caller holds mu.
func (h *Handler) redeliverOutcome(p peer.ID, kind Kind, rec store.Outgoing) {
	id := ExchangeID(rec.ID)
	reason := Reason(rec.Reason)
	o := Outcome{Peer: p, Exchange: id, Role: Dialer, Kind: kind, OK: reason == ReasonOK, State: StateDone,
		Stage: StateDone, Reason: reason, Attempts: rec.Attempts, Duration: max(rec.Ended.Sub(rec.Created), 0),
		Tag: rec.Tag, Resumed: true, Redelivered: true}
	if !o.OK {
		o.State, o.Stage = StateFailed, StateFailed
		o.Err = fmt.Errorf("%s", rec.Error)
		// As finish decided: a cancelled exchange is not dead-lettered.
		o.DeadLettered = reason != ReasonCancelled
	}
	if o.OK && kind == KindRequest {
		o.Reply = &Reply{From: p, Exchange: id, Data: rec.Reply, Tag: rec.Tag, Redelivered: true}
		h.events.Push(o.Reply, true)
	}
	h.outcomes.Push(&o, true)
	if h.cfg.AckOutcomes {
		h.dur.handedOut(id, p)
	}
}

// resume takes over what a previous process left in the store: received
// exchanges the application had not handled are delivered again, marked
// Redelivered; the others are remembered against resends (with the reply,
// for requests); outgoing exchanges start again with their ID, attempt
// count and tag, marked Resumed. It runs before the loop starts.
func (h *Handler) resume() error {
	st, err := h.cfg.Store.Load()
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	slices.SortStableFunc(st.Incoming, func(a, b store.Incoming) int { return a.Updated.Compare(b.Updated) })
	for _, in := range st.Incoming {
		p, err := peer.IDFromBytes([]byte(in.Peer))
		if err != nil {
			return fmt.Errorf("handler: stored exchange %x from %q: %w", in.ID, in.Peer, err)
		}
		id := ExchangeID(in.ID)
		key := inKey{p, id}
		kind := KindRequest
		if in.Kind == store.KindMessage {
			kind = KindMessage
		}
		if in.State != store.InPending {
			// A record's age is counted from now, not from its stored
			// time: that came from the previous life's wall clock, and
			// the process cannot tell downtime from a clock step. Aged
			// by it, a step forward forgot answered requests early (a
			// resend delivered twice), and a step back kept them, and
			// every later one of the peer, until the clock caught up
			// (seen is a FIFO). Kept for DedupeTTL after the start
			// instead, at most DedupePerPeer per peer.
			h.seen.add(p, id, now)
			switch {
			case in.State == store.InAnswered:
				// In the order of their last change (Load): the
				// oldest are the first dropped past the bound.
				h.keepReply(key, len(in.Reply))
			case in.Answered:
				// Answered, its reply dropped: not delivered again, and
				// no reply (dropReply).
			case kind == KindRequest:
				// A request is handled without an answer only when it
				// ended unanswered (unanswered).
				h.seen.markUnanswered(p, id)
			}
			continue
		}
		h.seen.add(p, id, now)
		h.dur.take(key, len(in.Payload))
		ps := h.peer(p)
		if kind == KindMessage {
			h.events.Push(&Message{From: p, Exchange: id, Data: in.Payload, Redelivered: true}, true)
			if h.cfg.AutoAck {
				h.dur.release(key)
				h.handled(p, id, kind)
			} else {
				h.dur.unacked[key] = true
			}
			continue
		}
		ex := h.receive(ps, id, p2p.Origin{})
		ex.request = Request{From: p, Exchange: id, Data: in.Payload, Redelivered: true, Deadline: ex.tm.at}
		h.events.Push(&ex.request, true)
	}
	h.flushExpired() // the records beyond DedupePerPeer
	slices.SortStableFunc(st.Outgoing, func(a, b store.Outgoing) int { return a.Created.Compare(b.Created) })
	for _, o := range st.Outgoing {
		p, err := peer.IDFromBytes([]byte(o.Peer))
		if err != nil {
			return fmt.Errorf("handler: stored exchange %x to %q: %w", o.ID, o.Peer, err)
		}
		kind := KindRequest
		if o.Kind == store.KindMessage {
			kind = KindMessage
		}
		if !o.Ended.IsZero() {
			h.redeliverOutcome(p, kind, o)
			if !h.cfg.AckOutcomes {
				// Kept only for this (keepUnread, or a life with
				// AckOutcomes): handed out, it is done with.
				var b store.Batch
				b.DeleteOutgoing(o.ID)
				h.write(&b)
			}
			continue
		}
		ex := &exchange{id: ExchangeID(o.ID), role: Dialer, kind: kind, start: o.Created, msg: o.Payload,
			tag: o.Tag, resumed: true, wire: appendEnvelope(nil, wireKind(kind), o.ID, o.Payload),
			// The sends of its previous lives count (at least one, once
			// sent: start's record counts the first); at least one send
			// in this life, whatever the last one used.
			attempts: min(o.Attempts, h.cfg.MaxAttempts-1), recorded: o.Attempts}
		if o.Addr != "" {
			if a, err := ma.NewMultiaddr(o.Addr); err == nil {
				ex.addr = a
			}
		}
		h.submit(p, ex)
	}
	if n := len(st.Outgoing) + len(st.Incoming); n > 0 {
		h.log.Info("resumed from the store", zap.Int("outgoing", len(st.Outgoing)), zap.Int("incoming", len(st.Incoming)))
	}
	return nil
}
