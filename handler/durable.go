package handler

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
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
	h.dur.release(key)
	return nil
}

// storedReply is the envelope of the reply to a request answered before,
// read back from the store; nil when there is none. The caller holds mu.
//
// Each call is a store read under mu and a whole reply sent again for a
// resend that may be a few bytes, so a peer asking again and again for one
// answered exchange is charged: an honest dialer sends a request at most
// MaxAttempts times in a life, the first of which was answered the usual
// way, so MaxAttempts replays of one exchange cover a dialer that lost its
// reply every time and restarted once. Each replay past them costs the
// peer a protocol_violation token; it is still answered, since a dialer
// that restarts over and over may honestly need it.
func (h *Handler) storedReply(p peer.ID, id ExchangeID) []byte {
	key := inKey{p, id}
	if !h.dur.answered[key] {
		return nil
	}
	if n := h.dur.replayed[key]; n >= h.cfg.MaxAttempts {
		h.node.Charge(p, ratelimit.ProtocolViolation)
	} else {
		h.dur.replayed[key] = n + 1
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

// replyCount counts stored replies: how many, and their bytes.
type replyCount struct{ live, bytes int }

// storedReplies are one peer's answered requests whose reply is in the
// store, oldest first, with the bytes of those replies
// (durableState.replies).
type storedReplies struct {
	q     []inKey // oldest at head; a key no longer in replySize is stale
	head  int
	live  int // keys of q[head:] still in replySize
	bytes int
}

// add counts k's reply, of size bytes, as the newest.
func (r *storedReplies) add(k inKey, size int) {
	r.q = append(r.q, k)
	r.live++
	r.bytes += size
}

// keepReply notes that the reply to answered request k, of size bytes, is
// in the store, where it stays for a resend until the dedupe record goes
// (DedupeTTL, DedupePerPeer). A peer's stored replies are bounded by
// MaxInboxBytesPerPeer too: without it, a peer sending fresh requests as
// fast as they are answered would hold DedupePerPeer replies of up to
// MaxMessageSize on disk, 4 GiB, more than the whole store, and the full
// store would fail every peer's exchanges. Every peer's together are
// bounded by MaxInboxBytes, for as many peers doing that at once. Past a
// bound replies whose exchanges have ended are dropped (dropReply),
// oldest first: the peer's own past its bound; past the node's, those of
// the peer holding the most (trimAllReplies), so that a peer filling its
// own share cannot push out the replies of peers holding less. One still
// on its way to its peer, or parked until it is back, is kept, as is this
// newest one. The caller holds mu.
func (h *Handler) keepReply(k inKey, size int) {
	h.dur.answered[k] = true
	if _, ok := h.dur.replySize[k]; ok {
		return
	}
	size = max(size, 1)
	r := h.dur.replies[k.peer]
	if r == nil {
		r = &storedReplies{}
		h.dur.replies[k.peer] = r
	}
	h.dur.replySize[k] = size
	r.add(k, size)
	h.dur.allReplies.live++
	h.dur.allReplies.bytes += size
	h.trimReplies(r, h.cfg.MaxInboxBytesPerPeer, k)
	h.trimAllReplies(h.cfg.MaxInboxBytes, k)
}

// trimAllReplies drops stored replies whose exchanges have ended, but
// keep's, until every peer's together hold at most limit bytes: from the
// peer holding the most, down to the next one's holding, then from both,
// and so on, each peer's oldest first. Dropped oldest first whoever's
// they were, a peer sending requests as fast as they are answered, within
// its own bound, pushed out every other peer's replies, and an honest
// dialer's resend got none. A peer whose replies left are all on their
// way (or keep) is passed over. The caller holds mu.
func (h *Handler) trimAllReplies(limit int, keep inKey) {
	var spent map[*storedReplies]bool // nothing left to drop
	// Each round drops at least one reply or passes a peer over.
	for h.dur.allReplies.bytes > limit {
		var top *storedReplies
		var topID peer.ID
		next := 0 // the most any other peer holds
		for p, r := range h.dur.replies {
			switch {
			case spent[r]:
			case top == nil || r.bytes > top.bytes || r.bytes == top.bytes && p < topID:
				if top != nil {
					next = max(next, top.bytes)
				}
				top, topID = r, p
			default:
				next = max(next, r.bytes)
			}
		}
		if top == nil {
			return
		}
		had := top.bytes
		target := max(next, had-(h.dur.allReplies.bytes-limit))
		if target >= had {
			target = had - 1 // a tie: one of them goes first
		}
		h.trimReplies(top, target, keep)
		if top.bytes == had {
			if spent == nil {
				spent = make(map[*storedReplies]bool)
			}
			spent[top] = true
		}
	}
}

// trimReplies drops the oldest of one peer's replies r whose exchanges
// have ended, but keep's, until r holds at most limit bytes, or only
// replies on their way and keep; then it compacts r. The caller holds mu.
func (h *Handler) trimReplies(r *storedReplies, limit int, keep inKey) {
	// Each key is looked at once at most: one whose exchange runs goes to
	// the back, and is dropped, if need be, once it has ended.
	for n := len(r.q) - r.head; n > 0 && r.bytes > limit; n-- {
		old := r.q[r.head]
		r.q[r.head] = inKey{}
		r.head++
		switch {
		case !h.isKept(old):
			// Stale: forgotten since (unkeepReply), or dropped.
		case old == keep || h.replying(old):
			r.q = append(r.q, old)
		default:
			h.uncount(old)
			h.dropReply(old)
		}
	}
	h.compactReplies(r)
}

// isKept reports whether the reply of k is counted as stored.
func (h *Handler) isKept(k inKey) bool {
	_, ok := h.dur.replySize[k]
	return ok
}

// replying reports whether the exchange of answered request k still runs:
// its reply waits for the peer's ack, or to be sent again.
func (h *Handler) replying(k inKey) bool {
	ps := h.peers[k.peer]
	return ps != nil && ps.inbound[k.id] != nil
}

// compactReplies drops r's dead head, and its stale keys once they are
// most of it, so that it holds about its live keys whatever the peers'
// history: a peer whose replies are small never passes the bound, and
// its forgotten keys would otherwise pile up for as long as it talks.
func (h *Handler) compactReplies(r *storedReplies) {
	if len(r.q)-r.head > 2*r.live+64 {
		q := r.q[:0] // in place: each key moves down, never up
		for _, k := range r.q[r.head:] {
			if h.isKept(k) {
				q = append(q, k)
			}
		}
		clear(r.q[len(q):])
		r.q, r.head = q, 0
		return
	}
	if r.head > len(r.q)/2 {
		n := copy(r.q, r.q[r.head:])
		clear(r.q[n:])
		r.q, r.head = r.q[:n], 0
	}
}

// dropReply forgets the stored reply of answered request k and keeps only
// its dedupe record, marked answered: a resend of it is not delivered, and
// gets no reply (its dialer's reply timeout ends it), as a resend of an
// answered request does without a store. Replies go oldest first, and an
// honest dialer resends within seconds, so a dropped reply is one its
// dialer most likely has. The caller holds mu.
func (h *Handler) dropReply(k inKey) {
	delete(h.dur.answered, k)
	delete(h.dur.replayed, k)
	now := time.Now()
	var b store.Batch
	b.PutIncoming(store.Incoming{Peer: string(k.peer), ID: uint64(k.id), Kind: store.KindRequest, State: store.InHandled,
		Answered: true, Received: now, Updated: now})
	h.write(&b)
	h.metrics.replyDropped()
}

// uncount stops counting the stored reply of k, in its peer's and in every
// peer's, leaving its key in its peer's queue, stale. It returns its peer's
// queue, nil when that holds no reply any more (and is gone).
func (h *Handler) uncount(k inKey) *storedReplies {
	n, ok := h.dur.replySize[k]
	if !ok {
		return nil
	}
	delete(h.dur.replySize, k)
	h.dur.allReplies.live--
	h.dur.allReplies.bytes -= n
	r := h.dur.replies[k.peer]
	r.live--
	r.bytes -= n
	if r.live <= 0 {
		delete(h.dur.replies, k.peer)
		return nil
	}
	return r
}

// unkeepReply stops counting the stored reply of k, forgotten.
func (h *Handler) unkeepReply(k inKey) {
	if !h.isKept(k) {
		return
	}
	if r := h.uncount(k); r != nil {
		h.compactReplies(r)
	}
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
