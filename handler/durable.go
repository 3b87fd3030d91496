package handler

import (
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// Store is what the handler needs of a durable store (Config.Store);
// *store.Store is one. CommitAsync's done may run on the caller's goroutine
// when the store is closed, so the handler never holds its own lock in it.
type Store interface {
	// Commit applies b durably before returning.
	Commit(b *store.Batch) error
	// CommitAsync applies b durably and then calls done, in queue order.
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
	answered  map[inKey]bool  // answered requests whose reply is in the store
	unacked   map[inKey]bool  // messages delivered, awaiting Ack
	unhandled map[peer.ID]int // requests and messages of each peer not yet handled
	// unconfirmed are our exchanges whose Outcomes await AckOutcome
	// (Config.AckOutcomes; outcome_ack.go).
	unconfirmed map[ExchangeID]*awaitingAck
	storing     map[inKey]*storing // received, being written or not yet taken by the loop
	expired     []inKey            // dedupe records forgotten, to delete from the store
	finished    chan struct{}      // a finish committed: the loop has completions to hand out
	done        []completion       // finishes committed, in commit order; under Handler.doneMu
	overflow    []overflowed       // stored, or replies, not yet delivered for want of room (overflow.go)
	heldReply   map[inKey]bool     // the replies in overflow
	reread      []overflowed       // overflowed whose read back failed, to read again
	rereadAt    *timerEntry        // when reread goes back to overflow
	more        chan struct{}      // overflow grew: the loop looks
}

// completion is what a dialer's finished exchange hands the application once
// the store has recorded its end.
type completion struct {
	reply   *Reply
	outcome Outcome
	err     error
}

func newDurableState() durableState {
	return durableState{
		answered:    make(map[inKey]bool),
		unacked:     make(map[inKey]bool),
		unhandled:   make(map[peer.ID]int),
		unconfirmed: make(map[ExchangeID]*awaitingAck),
		storing:     make(map[inKey]*storing),
		heldReply:   make(map[inKey]bool),
		finished:    make(chan struct{}, 1),
		more:        make(chan struct{}, 1),
	}
}

func (h *Handler) durable() bool { return h.cfg.Store != nil }

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

// accept is the node's Config.AcceptReady: it judges each message before the
// node acknowledges it, so that an ack never says OK for something the
// handler then rejects. A payload on the handler's channel that is not a
// valid envelope (it does not decode, its kind is unspecified or unknown,
// its exchange is 0) is refused malformed: the node charges the peer one
// malformed_message token for it, and that is all (no Error, no fault, no
// disconnection). A reply to an exchange this process does not know is
// refused with unknown_exchange: it is no misbehaviour (it answers this
// process's previous life, or another process sharing our key). With a
// store, a new request or message is written to disk first, and acked once
// it is there. A reply to a request of ours still running is taken: acked
// OK even when the node's Receiver is full (overflow.go). A resent request
// that our application left unanswered is refused unanswered: it will be
// neither delivered again nor answered, and its dialer must know that now
// rather than at its reply timeout.
func (h *Handler) accept(d p2p.Data) (p2p.Reason, <-chan struct{}, func() p2p.Reason) {
	if d.Channel != h.cfg.Channel {
		return p2p.ReasonOK, nil, nil // the loop reports it
	}
	env, err := decodeEnvelope(d.Bytes)
	if err != nil || env.exchange == 0 || !knownKind(env.kind) {
		if ce := h.log.Check(zap.DebugLevel, "refused a payload that is not an envelope"); ce != nil {
			ce.Write(zap.Stringer("peer", d.From), zap.Int("size", len(d.Bytes)), zap.Error(err))
		}
		return p2p.ReasonMalformed, nil, nil
	}
	id := ExchangeID(env.exchange)
	switch env.kind {
	case pb.Kind_KIND_REPLY:
		h.mu.Lock()
		running, known := h.expectsReply(d.From, id)
		h.mu.Unlock()
		if !known {
			h.metrics.unknownExchange()
			if ce := h.log.Check(zap.DebugLevel, "reply to an unknown exchange"); ce != nil {
				ce.Write(zap.Stringer("peer", d.From), zap.Stringer("exchange", id))
			}
			return p2p.ReasonUnknownExchange, nil, nil
		}
		if running {
			// Taken (a verdict given through a wait): the node acks it
			// OK even when its Receiver is full, and hands it to
			// overflow then, as expectsReply's mark says.
			return p2p.ReasonOK, h.known, verdictOK
		}
	case pb.Kind_KIND_REQUEST, pb.Kind_KIND_MESSAGE:
		if h.durable() {
			return h.storeReceived(d.From, id, env)
		}
		if env.kind == pb.Kind_KIND_REQUEST {
			h.mu.Lock()
			left := h.seen.unanswered(d.From, id, time.Now())
			h.mu.Unlock()
			if left {
				return h.refuseUnanswered(d.From, id)
			}
		}
	}
	return p2p.ReasonOK, nil, nil
}

// refuseUnanswered is the verdict on a resend of a request that ended
// without our application's reply (reply timeout): delivering it again
// would break effectively-once, and acking it OK would leave its dialer
// waiting for a reply that never comes (docs/PROTOCOL.md §4.4).
func (h *Handler) refuseUnanswered(from peer.ID, id ExchangeID) (p2p.Reason, <-chan struct{}, func() p2p.Reason) {
	if ce := h.log.Check(zap.DebugLevel, "refused a resent request left unanswered"); ce != nil {
		ce.Write(zap.Stringer("peer", from), zap.Stringer("exchange", id))
	}
	return p2p.ReasonUnanswered, nil, nil
}

// knownKind reports whether k is a kind of envelope this handler takes.
func knownKind(k pb.Kind) bool {
	switch k {
	case pb.Kind_KIND_REQUEST, pb.Kind_KIND_REPLY, pb.Kind_KIND_MESSAGE:
		return true
	}
	return false
}

// expectsReply reports whether a reply to id from p is one this process
// can take (known): its exchange is running, or ended lately (a resent
// reply). A running exchange is marked: our node acks the reply OK,
// delivered or, when the Receiver is full, held by overflow (accept makes
// sure of it), so the exchange waits for the loop to take it (replyLate).
// The caller holds mu.
func (h *Handler) expectsReply(p peer.ID, id ExchangeID) (running, known bool) {
	if ps := h.peers[p]; ps != nil {
		if ex := ps.outbound[id]; ex != nil && ex.kind == KindRequest {
			ex.replyAccepted = true
			return true, true
		}
	}
	return false, h.done.has(p, id, time.Now())
}

// verdictOK is the wait of a verdict known at once to be OK.
func verdictOK() p2p.Reason { return p2p.ReasonOK }

// storeReceived writes a received request or message to the inbox, unless it is
// there already (a resend), and gives the verdict once it is on disk; its
// ready is closed then, so that the node need not wait for it to write the
// acks of the messages before (p2p.Config.AcceptReady).
func (h *Handler) storeReceived(from peer.ID, id ExchangeID, env envelope) (p2p.Reason, <-chan struct{}, func() p2p.Reason) {
	now := time.Now()
	key := inKey{from, id}
	h.mu.Lock()
	defer h.mu.Unlock()
	if env.kind == pb.Kind_KIND_REQUEST && h.seen.unanswered(from, id, now) {
		return h.refuseUnanswered(from, id)
	}
	if h.seen.has(from, id, now) || h.holds(from, id) {
		return p2p.ReasonOK, nil, nil // on disk already; the loop answers the resend
	}
	if st, ok := h.dur.storing[key]; ok {
		// A copy of one being written (a resend on another stream): OK
		// once the first is on disk, busy until then.
		if st.stored {
			return p2p.ReasonOK, nil, nil
		}
		return p2p.ReasonBusy, nil, nil
	}
	// The slot is taken here, not when the loop delivers: the messages a
	// peer pipelines are all judged before the first reaches the loop.
	if h.dur.unhandled[from] >= h.cfg.MaxInboxPerPeer {
		return p2p.ReasonBusy, nil, nil
	}
	h.dur.unhandled[from]++
	st := &storing{}
	h.dur.storing[key] = st
	kind := store.KindRequest
	if env.kind == pb.Kind_KIND_MESSAGE {
		kind = store.KindMessage
	}
	var b store.Batch
	b.AddIncoming(store.Incoming{Peer: string(from), ID: uint64(id), Kind: kind, State: store.InPending,
		Payload: env.payload, Received: now, Updated: now})
	var err error // the commit's, read once ready is closed
	ready := make(chan struct{})
	h.cfg.Store.CommitAsync(&b, func(e error) { err = e; close(ready) })
	return p2p.ReasonOK, ready, func() p2p.Reason {
		<-ready
		h.mu.Lock()
		defer h.mu.Unlock()
		if err != nil {
			// Refused, not lost: the sender resends.
			delete(h.dur.storing, key)
			h.dur.unhandled[from]--
			h.log.Warn("could not store a received message: answering busy", zap.Stringer("peer", from), zap.Error(err))
			return p2p.ReasonBusy
		}
		st.stored = true
		return p2p.ReasonOK
	}
}

// holds reports whether the application holds exchange id from p: a
// request it has not seen through (its exchange runs), or a message it has
// not acknowledged. A resend of one is no new arrival, even once its
// dedupe record is gone (DedupePerPeer), so it takes no second inbox slot
// and is not delivered twice. The caller holds mu.
func (h *Handler) holds(p peer.ID, id ExchangeID) bool {
	if ps := h.peers[p]; ps != nil && ps.inbound[id] != nil {
		return true
	}
	return h.dur.unacked[inKey{p, id}]
}

// storing is a received exchange being written to the inbox: counted in
// unhandled from then on, until the loop takes it (arrived).
type storing struct{ stored bool }

// arrived tells whether a request or message reaching the loop is one
// accept stored (and counted) for this process; it forgets it as storing.
// The caller holds mu.
func (h *Handler) arrived(p peer.ID, id ExchangeID) bool {
	key := inKey{p, id}
	if _, ok := h.dur.storing[key]; !ok {
		return false
	}
	delete(h.dur.storing, key)
	return true
}

// finish records the end of a dialer's exchange, then hands its Reply (if
// any) and Outcome to the application: once they are out, a restart must
// not run the exchange again. The record leaves the outbox, or, with
// Config.AckOutcomes, stays marked ended until AckOutcome. A failed
// exchange, unless cancelled, is also kept in the dead letters. The
// caller holds mu.
func (h *Handler) finish(ex *exchange, o Outcome, reply *Reply) {
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
	h.cfg.Store.CommitAsync(&b, func(err error) {
		c := completion{reply: reply, outcome: o, err: err}
		if err != nil {
			c.outcome.DeadLettered = false
		}
		h.doneMu.Lock()
		h.dur.done = append(h.dur.done, c)
		h.doneMu.Unlock()
		select {
		case h.dur.finished <- struct{}{}:
		default:
		}
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
		if c.err != nil {
			h.outcomes.Push(Error{Peer: c.outcome.Peer, Err: fmt.Errorf("%w: the end of exchange %s: %w (a restart may resume it)",
				ErrNotDurable, c.outcome.Exchange, c.err)}, false)
		}
		if c.reply != nil {
			h.deliver(*c.reply)
		}
		h.outcomes.Push(c.outcome, true)
	}
}

// storeReply records the application's reply to a received request, before
// it is sent.
func (h *Handler) storeReply(p peer.ID, id ExchangeID, msg []byte) error {
	now := time.Now()
	var b store.Batch
	b.PutIncoming(store.Incoming{Peer: string(p), ID: uint64(id), Kind: store.KindRequest, State: store.InAnswered,
		Reply: msg, Received: now, Updated: now})
	return h.commit(&b)
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
	h.dur.unhandled[p]--
	return nil
}

// redeliverOutcome hands out again the Reply and Outcome of an exchange
// that ended in a previous life whose application never acknowledged them.
// The caller holds mu.
func (h *Handler) redeliverOutcome(p peer.ID, kind Kind, rec store.Outgoing) {
	id := ExchangeID(rec.ID)
	reason := Reason(rec.Reason)
	o := Outcome{Peer: p, Exchange: id, Role: Dialer, Kind: kind, OK: reason == ReasonOK, State: StateDone,
		Stage: StateDone, Reason: reason, Attempts: rec.Attempts, Duration: rec.Ended.Sub(rec.Created),
		Tag: rec.Tag, Resumed: true, Redelivered: true}
	if !o.OK {
		o.State, o.Stage = StateFailed, StateFailed
		o.Err = fmt.Errorf("%s", rec.Error)
		// As finish decided: a cancelled exchange is not dead-lettered.
		o.DeadLettered = reason != ReasonCancelled
	}
	if o.OK && kind == KindRequest {
		h.events.Push(Reply{From: p, Exchange: id, Data: rec.Reply, Tag: rec.Tag, Redelivered: true}, true)
	}
	h.outcomes.Push(o, true)
	h.dur.handedOut(id, p)
}

// storedReply is the envelope of the reply to a request answered before,
// read back from the store; nil when there is none. The caller holds mu.
func (h *Handler) storedReply(p peer.ID, id ExchangeID) []byte {
	if !h.dur.answered[inKey{p, id}] {
		return nil
	}
	in, ok, err := h.cfg.Store.Incoming(string(p), uint64(id))
	if err != nil || !ok || in.State != store.InAnswered {
		if err != nil {
			h.log.Warn("reading a stored reply", zap.Stringer("peer", p), zap.Stringer("exchange", id), zap.Error(err))
		}
		return nil
	}
	return appendEnvelope(nil, pb.Kind_KIND_REPLY, uint64(id), in.Reply)
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
			if now.Sub(in.Updated) > h.cfg.DedupeTTL {
				h.dur.expired = append(h.dur.expired, key)
				continue
			}
			h.seen.add(p, id, in.Updated)
			switch {
			case in.State == store.InAnswered:
				h.dur.answered[key] = true
			case kind == KindRequest:
				// A request is handled without an answer only when it
				// ended unanswered (unanswered).
				h.seen.markUnanswered(p, id)
			}
			continue
		}
		h.seen.add(p, id, now)
		h.dur.unhandled[p]++
		ps := h.peer(p)
		if kind == KindMessage {
			h.events.Push(Message{From: p, Exchange: id, Data: in.Payload, Redelivered: true}, true)
			if h.cfg.AutoAck {
				h.dur.unhandled[p]--
				h.handled(p, id, kind)
			} else {
				h.dur.unacked[key] = true
			}
			continue
		}
		h.receive(ps, id, p2p.Origin{})
		h.events.Push(Request{From: p, Exchange: id, Data: in.Payload, Redelivered: true}, true)
	}
	h.flushExpired()
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
