package handler

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/handler/pb"
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
//
// A reply to one of our requests still running is taken the same way, with
// or without a store (accept marks the request replyAccepted, which Cancel
// and replyLate trust): it is held here with its payload, one per request
// in flight (a copy resent meanwhile is acked OK and dropped), and handed
// to the loop like the others.
//
// One whose read back fails is still the application's to get in this
// life: the sender, told OK, sends it no more. It keeps its slot, the
// application hears an Error, and the read is tried again after
// Config.BackoffMax, while the others go on.

// overflowed is a stored exchange, or a reply, the node could not hand to
// the loop.
type overflowed struct {
	key     inKey
	origin  p2p.Origin // the stream it came on, for its reply
	failed  bool       // a read back failed, and the application was told
	reply   bool       // a reply to our request, held here with its payload
	payload []byte
}

// overflow is the node's Config.Overflow. It runs on the stream's reader
// or settler.
func (h *Handler) overflow(d p2p.Data) {
	env, err := decodeEnvelope(d.Bytes)
	if err != nil {
		return // accept stored only envelopes
	}
	o := overflowed{key: inKey{d.From, ExchangeID(env.exchange)}, origin: d.Origin}
	h.mu.Lock()
	if env.kind == pb.Kind_KIND_REPLY {
		if h.dur.heldReply[o.key] {
			// A copy of one held (resent, its first ack lost): acked
			// OK as that one was, and the loop needs only one.
			h.mu.Unlock()
			return
		}
		h.dur.heldReply[o.key] = true
		o.reply, o.payload = true, env.payload
	}
	h.dur.overflow = append(h.dur.overflow, o)
	h.mu.Unlock()
	select {
	case h.dur.more <- struct{}{}:
	default:
	}
}

// deliverOverflow hands the application the overflowed exchanges, read
// back from the store, and the replies, while it has room. A handler
// shutting down leaves the exchanges stored, for the next start, and takes
// the replies, which complete its requests. The caller holds mu.
func (h *Handler) deliverOverflow() {
	for len(h.dur.overflow) > 0 && !h.paused {
		o := h.dur.overflow[0]
		h.dur.overflow[0] = overflowed{}
		h.dur.overflow = h.dur.overflow[1:]
		if o.reply {
			delete(h.dur.heldReply, o.key)
			h.onReply(o.key.peer, o.key.id, o.payload)
			continue
		}
		if h.stopping {
			continue // stored: the next start delivers it
		}
		if _, ok := h.dur.storing[o.key]; !ok {
			continue // a copy the peer sent again reached the loop first
		}
		in, ok, err := h.cfg.Store.Incoming(string(o.key.peer), uint64(o.key.id))
		if err != nil {
			h.rereadLater(o, err)
			continue
		}
		if !ok {
			// accept stored it before its OK, and only an expired
			// dedupe record is deleted: a resend of one handled long
			// ago, most likely. Nothing is left to deliver, nor to
			// count against the peer's inbox.
			delete(h.dur.storing, o.key)
			h.dur.release(o.key)
			h.log.Warn("a stored message is no longer in the store", zap.Stringer("peer", o.key.peer), zap.Stringer("exchange", o.key.id))
			h.outcomes.Push(&Error{Peer: o.key.peer, Err: fmt.Errorf("%w: exchange %s was stored but is no longer in the store",
				ErrNotDurable, o.key.id)}, false)
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
			h.dur.release(o.key)
			h.seen.add(o.key.peer, o.key.id, time.Now())
			if in.State == store.InAnswered {
				h.keepReply(o.key, len(in.Reply))
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

// rereadLater keeps o, whose read back failed with err, to be read again
// after BackoffMax, and tells the application the first time. The caller
// holds mu.
func (h *Handler) rereadLater(o overflowed, err error) {
	h.log.Warn("reading back a stored message", zap.Stringer("peer", o.key.peer), zap.Stringer("exchange", o.key.id), zap.Error(err))
	if !o.failed {
		o.failed = true
		h.outcomes.Push(&Error{Peer: o.key.peer, Err: fmt.Errorf("%w: exchange %s was stored but could not be read back (tried again every %s): %w",
			ErrNotDurable, o.key.id, h.cfg.BackoffMax, err)}, false)
	}
	h.dur.reread = append(h.dur.reread, o)
	if !h.timers.scheduled(h.dur.rereadAt) {
		h.dur.rereadAt = h.timers.after(h.cfg.BackoffMax, h.reread)
	}
}

// reread puts the overflowed exchanges whose read back failed before the
// others again; the loop delivers them once it is through (afterInput).
// The caller holds mu.
func (h *Handler) reread() {
	h.dur.overflow = append(h.dur.reread, h.dur.overflow...)
	h.dur.reread = nil
}
