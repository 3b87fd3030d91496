package handler

import (
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// The operator's corrections to the handler's own exchanges while it runs:
// cancel exchanges in progress, start dead letters again, forget them.
// Each checks every ID first and changes nothing unless all are known.

// Cancel ends outgoing exchanges in progress (queued, dialing, awaiting an
// ack or a reply, backing off): each gets its Outcome with
// ReasonCancelled, leaves the store's outbox (on disk when Cancel
// returns) and is not dead-lettered. A peer may have received it already;
// a reply arriving later is ignored.
// It fails, cancelling nothing, with ErrUnknownExchange when an ID names
// no outgoing exchange in progress, or a request whose reply our node has
// already taken (it completes with that reply); and with ErrNotDurable
// when the store cannot record the cancellation: the exchanges then go on
// as if Cancel had not been called.
func (h *Handler) Cancel(ids ...ExchangeID) error {
	if h.closing.Load() {
		return ErrClosed
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.exited {
		return ErrClosed
	}
	exs, err := h.cancellable(ids)
	if err != nil {
		return err
	}
	if h.durable() {
		// On disk before anything changes in memory: a failed write
		// leaves the exchanges running, as Cancel says, rather than
		// reported cancelled yet resumed by the next start. mu is held
		// across the write (one sync, for an operator's rare call) so
		// that nothing ends these exchanges meanwhile (a reply, a
		// deadline) and no later write of theirs is queued before this
		// one. finish writes the same records again once they end.
		var b store.Batch
		for _, ex := range exs {
			h.cancelRecord(&b, ex)
		}
		if err := h.commit(&b); err != nil {
			return fmt.Errorf("handler: cancelling %s: %w", idList(ids), err)
		}
	}
	for _, ex := range exs {
		h.end(ex, ReasonCancelled, ErrCancelled) // a repeated ID ends once
	}
	h.wakeLoop()
	return nil
}

// cancellable returns the exchanges ids that Cancel may end, or why it may
// not end them all. The caller holds mu.
func (h *Handler) cancellable(ids []ExchangeID) ([]*exchange, error) {
	exs := make([]*exchange, 0, len(ids))
	var missing, replied []ExchangeID
	for _, id := range ids {
		switch ex := h.outboundExchange(id); {
		case ex == nil:
			missing = append(missing, id)
		case ex.replyAccepted:
			// Our node acked its reply, which waits for the loop: the
			// peer's Outcome says ok, and so will ours (as replyLate).
			replied = append(replied, id)
		default:
			exs = append(exs, ex)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: no outgoing exchange %s in progress", ErrUnknownExchange, idList(missing))
	}
	if len(replied) > 0 {
		return nil, fmt.Errorf("%w: exchange %s has its reply (our node took it, the peer's exchange ended ok): it completes, not cancelled",
			ErrUnknownExchange, idList(replied))
	}
	return exs, nil
}

// cancelRecord adds to b what finish writes for ex cancelled: its removal
// from the outbox, or with Config.AckOutcomes its record marked ended.
func (h *Handler) cancelRecord(b *store.Batch, ex *exchange) {
	if !h.cfg.AckOutcomes {
		b.DeleteOutgoing(uint64(ex.id))
		return
	}
	rec := outgoing(ex.p.id, ex)
	rec.Ended, rec.Reason, rec.Error = time.Now(), string(ReasonCancelled), ErrCancelled.Error()
	b.PutOutgoing(rec)
}

// RetryDeadLetters starts the dead letters ids again: each leaves the dead
// letters for the outbox and runs as a new exchange with its old ID, tag,
// peer, address, payload and creation time (as a retry on a stopped
// node's store keeps it), and attempts 0. A peer that still remembers the
// ID (its Config.DedupeTTL) answers with the reply it stored; if its
// application left the request unanswered, it refuses it, and the
// exchange ends at once with ReasonUnanswered, dead-lettered again: the
// request must be sent anew (Request). It needs a Config.Store (ErrNoStore)
// and fails with ErrUnknownExchange, changing nothing, when an ID is not
// a dead letter. Once the store has moved them, a handler closing
// meanwhile leaves them in the outbox for the next start (ErrClosed). It
// reads only the dead letters named, not the whole store.
//
// With Config.AckOutcomes, a retried exchange whose failed Outcome still
// awaits AckOutcome has two Outcomes under its ID, that one and the
// retry's, and needs an AckOutcome for each (see AckOutcome): the ack of
// the failed one never removes the retry from the store. A restart before
// the last ack hands out only the retry's Outcome, or resumes the retry.
func (h *Handler) RetryDeadLetters(ids ...ExchangeID) error {
	if !h.durable() {
		return ErrNoStore
	}
	if h.closing.Load() {
		return ErrClosed
	}
	h.deadMu.Lock()
	defer h.deadMu.Unlock()
	dls, err := h.deadLetters(ids)
	if err != nil {
		return err
	}
	type retry struct {
		p  peer.ID
		ex *exchange
	}
	retries := make([]retry, 0, len(dls))
	var b store.Batch
	for _, d := range dls {
		p, err := peer.IDFromBytes([]byte(d.Peer))
		if err != nil {
			return fmt.Errorf("handler: dead letter %s to %q: %w", ExchangeID(d.ID), d.Peer, err)
		}
		if !h.cfg.Node.Allowlist.Contains(p) {
			return fmt.Errorf("handler: dead letter %s: %s: %w", ExchangeID(d.ID), p, p2p.ErrNotAllowlisted)
		}
		kind := KindRequest
		if d.Kind == store.KindMessage {
			kind = KindMessage
		}
		wire, err := h.encode(wireKind(kind), ExchangeID(d.ID), d.Payload)
		if err != nil {
			return fmt.Errorf("handler: dead letter %s: %w", ExchangeID(d.ID), err)
		}
		// Created stays the original Request's, as a retry on a stopped
		// node's store keeps it (p2pnode deadletters retry); the record
		// says attempts 0 until the retry's first send writes 1.
		ex := &exchange{id: ExchangeID(d.ID), role: Dialer, kind: kind, start: d.Created, msg: d.Payload, tag: d.Tag, wire: wire}
		if d.Addr != "" {
			if a, err := ma.NewMultiaddr(d.Addr); err == nil {
				ex.addr = a
			}
		}
		b.PutOutgoing(outgoing(p, ex))
		b.DeleteDeadLetter(d.ID)
		retries = append(retries, retry{p, ex})
	}
	// A retried exchange whose last Outcome awaits AckOutcome: the retry
	// replaces its ended record, which that Outcome's ack must then leave
	// alone. Marked before the write, under mu: an AckOutcome deleting the
	// record is then queued before the write, never after it (it would
	// drop the retried exchange from the outbox).
	retried := make([]ExchangeID, len(retries))
	for i, r := range retries {
		retried[i] = r.ex.id
	}
	h.mu.Lock()
	marked := h.dur.markRetried(retried)
	h.mu.Unlock()
	if err := h.commit(&b); err != nil {
		h.mu.Lock()
		h.unmarkRetried(marked)
		h.mu.Unlock()
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.exited {
		return fmt.Errorf("%w: the exchanges moved to the outbox resume at the next start", ErrClosed)
	}
	for _, r := range retries {
		h.submit(r.p, r.ex)
	}
	h.wakeLoop()
	return nil
}

// DropDeadLetters forgets the dead letters ids. It needs a Config.Store
// (ErrNoStore) and fails with ErrUnknownExchange, dropping nothing, when
// an ID is not a dead letter. It reads only the dead letters named.
func (h *Handler) DropDeadLetters(ids ...ExchangeID) error {
	if !h.durable() {
		return ErrNoStore
	}
	h.deadMu.Lock()
	defer h.deadMu.Unlock()
	dls, err := h.deadLetters(ids)
	if err != nil {
		return err
	}
	var b store.Batch
	for _, d := range dls {
		b.DeleteDeadLetter(d.ID)
	}
	return h.commit(&b)
}

// deadLetters returns the dead letters ids, each once, or
// ErrUnknownExchange naming those the store does not hold. It looks each
// up: Load would decode the whole store (the inbox, dedupe records and
// replies included) to find a few records. The lookups need no snapshot:
// the caller holds deadMu, so no other retry or drop changes the dead
// letters meanwhile.
func (h *Handler) deadLetters(ids []ExchangeID) ([]store.DeadLetter, error) {
	var (
		out     []store.DeadLetter
		missing []ExchangeID
		seen    = make(map[ExchangeID]bool, len(ids))
	)
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		d, ok, err := h.cfg.Store.DeadLetter(uint64(id))
		if err != nil {
			return nil, fmt.Errorf("handler: reading dead letter %s: %w", id, err)
		}
		if ok {
			out = append(out, d)
		} else {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s not in the dead letters", ErrUnknownExchange, idList(missing))
	}
	return out, nil
}

// outboundExchange is our exchange id in progress, or nil. The caller
// holds mu.
func (h *Handler) outboundExchange(id ExchangeID) *exchange {
	for _, ps := range h.peers {
		if ex := ps.outbound[id]; ex != nil && !ex.ended() {
			return ex
		}
	}
	return nil
}

// wakeLoop tells the loop to look at the state an API call changed, as
// post does. The caller holds mu.
func (h *Handler) wakeLoop() {
	if h.afterInput() {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

func idList(ids []ExchangeID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, ", ")
}
