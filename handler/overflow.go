package handler

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// Overflow. A request or message that accept wrote to the inbox is the
// handler's from then on: its sender is acked OK. When the application
// falls behind, the node's Receiver fills and has no room for it; answering
// busy then would tell the sender that a message was refused which the
// inbox holds, and which the next start would deliver. So the node hands
// such a message to overflow instead (p2p.Config.Overflow), and the loop
// delivers it from the store once the application has room. It stays
// counted against the peer's MaxInboxPerPeer until then, which bounds how
// many a peer can have waiting; only their keys wait in memory.

// overflowed is a stored exchange the node could not hand to the loop.
type overflowed struct {
	key    inKey
	origin p2p.Origin // the stream it came on, for its reply
}

// overflow is the node's Config.Overflow. It runs on the stream's settler.
func (h *Handler) overflow(d p2p.Data) {
	env, err := decodeEnvelope(d.Bytes)
	if err != nil {
		return // accept stored only envelopes
	}
	h.mu.Lock()
	h.dur.overflow = append(h.dur.overflow, overflowed{key: inKey{d.From, ExchangeID(env.exchange)}, origin: d.Origin})
	h.mu.Unlock()
	select {
	case h.dur.more <- struct{}{}:
	default:
	}
}

// deliverOverflow hands the application the overflowed exchanges, read
// back from the store, while it has room. A handler shutting down leaves
// them stored, for the next start. The caller holds mu.
func (h *Handler) deliverOverflow() {
	for len(h.dur.overflow) > 0 && !h.paused && !h.stopping {
		o := h.dur.overflow[0]
		h.dur.overflow[0] = overflowed{}
		h.dur.overflow = h.dur.overflow[1:]
		if _, ok := h.dur.storing[o.key]; !ok {
			continue // a copy the peer sent again reached the loop first
		}
		in, ok, err := h.cfg.Store.Incoming(string(o.key.peer), uint64(o.key.id))
		if err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("%s not in the store", o.key.id)
			}
			// Still stored and counted: the next start delivers it.
			h.log.Warn("reading back a stored message", zap.Stringer("peer", o.key.peer), zap.Stringer("exchange", o.key.id), zap.Error(err))
			h.outcomes.Push(Error{Peer: o.key.peer, Err: fmt.Errorf("%w: exchange %s was stored but could not be read back (the next start delivers it): %w",
				ErrNotDurable, o.key.id, err)}, false)
			continue
		}
		if in.State != store.InPending {
			// A resend of one the application handled, after the memory
			// of it was dropped (DedupePerPeer) but not the inbox's
			// record, which the resend did not replace (AddIncoming): the
			// record has no payload to deliver, and says it is a
			// duplicate. Dedupe it as the inbox says (an answered request
			// gets its stored reply again) and free its slot.
			delete(h.dur.storing, o.key)
			h.dur.unhandled[o.key.peer]--
			h.seen.add(o.key.peer, o.key.id, time.Now())
			if in.State == store.InAnswered {
				h.dur.answered[o.key] = true
			}
		}
		switch in.Kind {
		case store.KindRequest:
			h.onRequest(o.key.peer, o.key.id, in.Payload, o.origin)
		case store.KindMessage:
			h.onMessage(o.key.peer, o.key.id, in.Payload)
		}
	}
	if len(h.dur.overflow) == 0 {
		h.dur.overflow = nil // let the backing array go
	}
}
