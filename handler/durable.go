package handler

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// Store is what the handler needs of a durable store (Config.Store);
// *store.Store is one. CommitAsync's done may run on the caller's goroutine
// when the store is closed, so the handler never holds its own lock in it.
type Store interface {
	// Commit applies b durably before returning.
	Commit(b *store.Batch) error
	// CommitAsync applies b durably and then calls done, in queue order
	// but for a batch a full store makes wait for room (store.Store's
	// CommitAsync): later batches that write other records may be
	// reported first. The handler relies on the order only between
	// batches that write the same record, which the store keeps.
	CommitAsync(b *store.Batch, done func(error))
	// Load returns everything on disk; the handler reads it once, when
	// it starts.
	Load() (store.State, error)
	// DeadLetter returns one dead letter; ok is false when there is none.
	DeadLetter(id uint64) (d store.DeadLetter, ok bool, err error)
	// Incoming returns one received exchange's record.
	Incoming(peer string, id uint64) (store.Incoming, bool, error)
}

// The durable side of the handler. Writes happen at five places, each
// before the step that would make a crash lose or repeat something:
//
//   - Request and Send store the outgoing exchange before returning (start);
//   - a received request or message is stored before its sender hears OK
//     (accept, on the p2p reader, which holds the ack for the disk write);
//   - Response stores the reply before it is sent, Ack stores that a
//     message was handled;
//   - a dialer's exchange leaves the outbox (for the dead letters, if it
//     failed) before its Reply and Outcome reach the application (finish).
//
// Everything else (attempt counts, unanswered requests that timed out,
// expired dedupe records) is written without waiting: losing it in a crash
// costs a resend or a record kept longer, never a loss or a repeat.

// inKey names a received exchange.
type inKey = pendingKey

// durableState is the handler's memory of its store, under Handler.mu.
type durableState struct {
	answered map[inKey]bool // answered requests whose reply is in the store
	replayed map[inKey]int  // times an answered request's stored reply was read and sent again
	// replies are each peer's stored replies, oldest first, allReplies
	// every peer's counted, and replySize the size of each: bounded per
	// peer and for all (keepReply).
	replies    map[peer.ID]*storedReplies
	allReplies replyCount
	replySize  map[inKey]int
	unacked    map[inKey]bool // messages delivered, awaiting Ack
	// inbox is what each peer's requests and messages not yet handled
	// hold, counted and in bytes, and inboxBytes every peer's bytes;
	// counted names each one and its size.
	inbox      map[peer.ID]inboxUse
	inboxBytes int
	counted    map[inKey]int
	// unconfirmed are our exchanges whose Outcomes await AckOutcome
	// (Config.AckOutcomes; outcome_ack.go).
	unconfirmed map[ExchangeID]*awaitingAck
	storing     map[inKey]*storing  // received, being written or not yet taken by the loop
	expired     []inKey             // dedupe records forgotten, to delete from the store
	finished    chan struct{}       // a finish committed: the loop has completions to hand out
	finishing   sync.WaitGroup      // finishes not yet in done (a full store's second batch)
	suspended   map[ExchangeID]bool // dialer exchanges Close left in the outbox
	done        []completion        // finishes committed, in commit order; under Handler.doneMu
	overflow    []overflowed        // stored, or replies, not yet delivered for want of room (overflow.go)
	heldReply   map[inKey]bool      // the replies in overflow
	reread      []overflowed        // overflowed whose read back failed, to read again
	rereadAt    *timerEntry         // when reread goes back to overflow
	more        chan struct{}       // overflow grew: the loop looks
}

// completion is what a dialer's finished exchange hands the application once
// the store has recorded its end.
type completion struct {
	reply   *Reply
	outcome *Outcome
	err     error // the end is not on disk: nothing is handed out
	partial error // the end is, without its dead letter or ended mark (a full store)
}

func newDurableState() durableState {
	return durableState{
		answered:    make(map[inKey]bool),
		replayed:    make(map[inKey]int),
		replies:     make(map[peer.ID]*storedReplies),
		replySize:   make(map[inKey]int),
		unacked:     make(map[inKey]bool),
		inbox:       make(map[peer.ID]inboxUse),
		counted:     make(map[inKey]int),
		unconfirmed: make(map[ExchangeID]*awaitingAck),
		storing:     make(map[inKey]*storing),
		heldReply:   make(map[inKey]bool),
		finished:    make(chan struct{}, 1),
		suspended:   make(map[ExchangeID]bool),
		more:        make(chan struct{}, 1),
	}
}

func (h *Handler) durable() bool { return h.cfg.Store != nil }

// inboxUse is what one peer's unhandled requests and messages hold.
type inboxUse struct {
	n     int
	bytes int
}

// take counts received exchange k, whose payload is size bytes, against
// its peer's inbox until release; counting one twice does nothing.
func (d *durableState) take(k inKey, size int) {
	if _, ok := d.counted[k]; ok {
		return
	}
	d.counted[k] = size
	d.inboxBytes += size
	u := d.inbox[k.peer]
	u.n++
	u.bytes += size
	d.inbox[k.peer] = u
}

// release stops counting k: it was handled, or not stored after all.
func (d *durableState) release(k inKey) {
	size, ok := d.counted[k]
	if !ok {
		return
	}
	delete(d.counted, k)
	d.inboxBytes -= size
	u := d.inbox[k.peer]
	u.n--
	u.bytes -= size
	if u.n <= 0 {
		delete(d.inbox, k.peer)
		return
	}
	d.inbox[k.peer] = u
}

func storeKind(k Kind) store.Kind {
	if k == KindMessage {
		return store.KindMessage
	}
	return store.KindRequest
}

func wireKind(k Kind) pb.Kind {
	if k == KindMessage {
		return pb.Kind_KIND_MESSAGE
	}
	return pb.Kind_KIND_REQUEST
}

// outgoing is ex's outbox record.
func outgoing(p peer.ID, ex *exchange) store.Outgoing {
	o := store.Outgoing{ID: uint64(ex.id), Peer: string(p), Kind: storeKind(ex.kind), Payload: ex.msg,
		Tag: ex.tag, Attempts: ex.attempts, Created: ex.start}
	if ex.addr != nil {
		o.Addr = ex.addr.String()
	}
	return o
}

// commit writes b and waits; its error wraps ErrNotDurable.
func (h *Handler) commit(b *store.Batch) error {
	if err := h.cfg.Store.Commit(b); err != nil {
		return fmt.Errorf("%w: %w", ErrNotDurable, err)
	}
	return nil
}

// write queues b without waiting: for records whose loss in a crash costs
// nothing but a resend or a record kept longer.
func (h *Handler) write(b *store.Batch) {
	h.cfg.Store.CommitAsync(b, func(err error) {
		if err != nil {
			h.log.Warn("store write failed", zap.Error(err))
		}
	})
}

// finish records the end of a dialer's exchange, then hands its Reply (if
// any) and Outcome to the application: once they are out, a restart must
// not run the exchange again. The record leaves the outbox, or, with
// Config.AckOutcomes, stays marked ended until AckOutcome. A failed
// exchange, unless cancelled, is also kept in the dead letters. The
// caller holds mu.
func (h *Handler) finish(ex *exchange, o *Outcome, reply *Reply) {
	var b store.Batch
	now := time.Now()
	rec := outgoing(o.Peer, ex)
	if !o.OK && o.Reason != ReasonCancelled {
		dl := store.DeadLetter{Outgoing: rec, Reason: string(o.Reason), Failed: now}
		if o.Err != nil {
			dl.Error = o.Err.Error()
		}
		b.PutDeadLetter(dl)
		o.DeadLettered = true
	}
	if h.cfg.AckOutcomes {
		rec.Ended, rec.Reason = now, string(o.Reason)
		if o.Err != nil {
			rec.Error = o.Err.Error()
		}
		if reply != nil {
			rec.Reply = reply.Data
		}
		b.PutOutgoing(rec)
		h.dur.handedOut(ex.id, o.Peer)
	} else {
		b.DeleteOutgoing(uint64(ex.id))
	}
	complete := func(c completion) {
		h.doneMu.Lock()
		h.dur.done = append(h.dur.done, c)
		h.doneMu.Unlock()
		select {
		case h.dur.finished <- struct{}{}:
		default:
		}
		h.dur.finishing.Done()
	}
	id, adds := uint64(ex.id), b.Adds()
	h.dur.finishing.Add(1)
	h.cfg.Store.CommitAsync(&b, func(err error) {
		if err == nil || !errors.Is(err, store.ErrFull) || !adds {
			complete(completion{reply: reply, outcome: o, err: err})
			return
		}
		// A full store refuses the dead letter (and AckOutcomes' ended
		// mark) when it adds more than a little to the record it
		// replaces (a reply, a long error), not a delete: the exchange
		// ends without them rather than not at all in this life.
		o.DeadLettered = false
		var del store.Batch
		del.DeleteOutgoing(id)
		h.cfg.Store.CommitAsync(&del, func(err2 error) {
			complete(completion{reply: reply, outcome: o, err: err2, partial: err})
		})
	})
}

// handOut gives the application the completions the store has recorded.
// The caller holds mu.
func (h *Handler) handOut() {
	h.doneMu.Lock()
	done := h.dur.done
	h.dur.done = nil
	h.doneMu.Unlock()
	for _, c := range done {
		if c.err != nil && (errors.Is(c.err, store.ErrFailed) || errors.Is(c.err, store.ErrClosed)) {
			// Its end is not on disk, and the store takes no more writes
			// in this life: a restart resumes the exchange and gives it
			// its one Outcome then. Handed out now too, it would end
			// twice.
			h.outcomes.Push(&Error{Peer: c.outcome.Peer, Err: fmt.Errorf("%w: the end of exchange %s: %w; its Reply and Outcome are held back: the next start resumes it",
				ErrNotDurable, c.outcome.Exchange, c.err)}, false)
			if u := h.dur.unconfirmed[c.outcome.Exchange]; u != nil {
				// Not handed out after all (finish counted it).
				if u.n--; u.n <= 0 {
					delete(h.dur.unconfirmed, c.outcome.Exchange)
				}
			}
			continue
		}
		if c.err != nil {
			// A one-off failure (the store works on): held back, the
			// Outcome would not come until a restart. Handed out, with
			// the chance that a restart runs the exchange again.
			h.outcomes.Push(&Error{Peer: c.outcome.Peer, Err: fmt.Errorf("%w: the end of exchange %s: %w (a restart may resume it)",
				ErrNotDurable, c.outcome.Exchange, c.err)}, false)
		}
		if c.partial != nil {
			h.outcomes.Push(&Error{Peer: c.outcome.Peer, Err: fmt.Errorf("%w: exchange %s ended without its dead letter%s: %w",
				ErrNotDurable, c.outcome.Exchange, ackMarkNote(h.cfg.AckOutcomes), c.partial)}, false)
		}
		if c.reply != nil {
			h.deliver(c.reply)
		}
		h.outcomes.Push(c.outcome, true)
	}
}

// keepUnread puts back in the store the dialer Outcomes that Close could
// not hand over (the application had not read the Outcomes channel): their
// exchanges' ends are on disk, and lost with the process they would be
// Outcomes never given. Each is kept as AckOutcomes keeps an Outcome
// handed out (the record marked ended, with its reason and reply), so the
// next start hands it out, Redelivered. With AckOutcomes the records are
// there already. It runs after the loop, before the store is closed.
func (h *Handler) keepUnread(left []Event) {
	if h.cfg.AckOutcomes {
		return
	}
	var b store.Batch
	kept := make(map[ExchangeID]bool)
	for i := len(left) - 1; i >= 0; i-- { // the newest Outcome of an ID
		o, ok := left[i].(*Outcome)
		if !ok || o.Role != Dialer || kept[o.Exchange] || h.dur.suspended[o.Exchange] {
			// A suspended exchange (a retry of it, say) is in the
			// outbox, to resume: its record is not to be replaced.
			continue
		}
		kept[o.Exchange] = true
		ended := time.Now()
		rec := store.Outgoing{ID: uint64(o.Exchange), Peer: string(o.Peer), Kind: storeKind(o.Kind), Tag: o.Tag,
			Attempts: o.Attempts, Created: ended.Add(-o.Duration), Ended: ended, Reason: string(o.Reason)}
		if o.Err != nil {
			rec.Error = o.Err.Error()
		}
		if o.Reply != nil {
			rec.Reply = o.Reply.Data
		}
		b.PutOutgoing(rec)
	}
	if b.Len() == 0 {
		return
	}
	if err := h.cfg.Store.Commit(&b); err != nil {
		h.log.Error("outcomes not read before Close are lost", zap.Int("outcomes", b.Len()), zap.Error(err))
	}
}

// ackMarkNote adds, with AckOutcomes, that the Outcome will not come again
// after a restart: its mark was refused with the dead letter.
func ackMarkNote(ackOutcomes bool) string {
	if ackOutcomes {
		return " or the mark that keeps its Outcome until AckOutcome"
	}
	return ""
}

// handled marks a received exchange handled without waiting: a request that
// ended unanswered, or a message auto-acked.
func (h *Handler) handled(p peer.ID, id ExchangeID, k Kind) {
	now := time.Now()
	var b store.Batch
	b.PutIncoming(store.Incoming{Peer: string(p), ID: uint64(id), Kind: storeKind(k), State: store.InHandled,
		Received: now, Updated: now})
	h.write(&b)
}

// Ack tells the handler that the application has handled the one-way
// message exchange from p: with a Config.Store, until then the message is
// kept, and a restart delivers it again (Message.Redelivered). It returns
// once that is on disk. Without a store, or with Config.AutoAck, it does
// nothing. It fails with ErrUnknownExchange for a message that is not
// awaiting its Ack.
func (h *Handler) Ack(p peer.ID, exchange ExchangeID) error {
	if !h.durable() || h.cfg.AutoAck {
		return nil
	}
	key := inKey{p, exchange}
	h.mu.Lock()
	ok := h.dur.unacked[key]
	delete(h.dur.unacked, key)
	h.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: no message %s from %s awaits its ack", ErrUnknownExchange, exchange, p)
	}
	now := time.Now()
	var b store.Batch
	b.PutIncoming(store.Incoming{Peer: string(p), ID: uint64(exchange), Kind: store.KindMessage, State: store.InHandled,
		Received: now, Updated: now})
	err := h.commit(&b)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.dur.unacked[key] = true // still the application's to ack
		return err
	}
	h.dur.release(key)
	return nil
}

// forget is the seen dedupe's eviction hook: a record no longer needed
// against resends leaves the store too, unless the application has still
// to handle it. The caller holds mu.
func (h *Handler) forget(p peer.ID, id ExchangeID) {
	key := inKey{p, id}
	if h.dur.unacked[key] || h.pending.has(p, id) {
		return
	}
	delete(h.dur.answered, key)
	delete(h.dur.replayed, key)
	h.unkeepReply(key)
	h.dur.expired = append(h.dur.expired, key)
	if len(h.dur.expired) >= 256 {
		h.flushExpired()
	}
}

// flushExpired deletes the forgotten dedupe records. The caller holds mu.
func (h *Handler) flushExpired() {
	if len(h.dur.expired) == 0 {
		return
	}
	var b store.Batch
	for _, k := range h.dur.expired {
		b.DeleteIncoming(string(k.peer), uint64(k.id))
	}
	h.dur.expired = h.dur.expired[:0]
	h.write(&b)
}
