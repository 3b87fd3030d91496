package handler

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// awaitingAck is one of our exchanges whose Outcomes the application has
// not all acknowledged (Config.AckOutcomes). An exchange has two when
// RetryDeadLetters started it again before its failed Outcome was
// acknowledged: the retry's Outcome comes under the same ID, and the store
// holds one record for both, the latest. Counting the Outcomes, rather than
// marking the ID, is what keeps the ack of the failed one from deleting the
// retry's record, whose own Outcome a crash would then lose.
type awaitingAck struct {
	peer peer.ID
	n    int // Outcomes handed out, not yet acknowledged
	// retried: the record under the ID is a retry's (running, or being
	// written by RetryDeadLetters), not an ended one; no ack deletes it.
	retried bool
}

// handedOut counts an Outcome of exchange id: the store's record under id
// is now (or, once finish's write is through, will be) its ended record.
// The caller holds mu.
func (d *durableState) handedOut(id ExchangeID, p peer.ID) {
	if u := d.unconfirmed[id]; u != nil {
		u.n++
		u.retried = false
		return
	}
	d.unconfirmed[id] = &awaitingAck{peer: p, n: 1}
}

// AckOutcome tells the handler that the application has dealt with an
// Outcome (and Reply) of its exchange: with Config.AckOutcomes, the
// exchange leaves the store once each of its Outcomes handed out is
// acknowledged, and a restart no longer hands them out again. It returns
// once that is on disk. Without a store or AckOutcomes it does nothing.
//
// An exchange that RetryDeadLetters started again before its failed
// Outcome was acknowledged has two Outcomes under its ID, the failed one
// and the retry's (once it ends), and needs one AckOutcome for each, in
// any order: the record leaves the store with the last, so the ack of the
// failed Outcome never removes the retry, running or ended. A restart
// before the last hands out only the retry's Outcome (or resumes the
// retry), even when its own ack came first: the failed one was superseded
// by it.
//
// It fails with ErrUnknownExchange when no Outcome of the exchange awaits
// its ack, and with ErrNotDurable when the store failed.
func (h *Handler) AckOutcome(exchange ExchangeID) error {
	if !h.durable() || !h.cfg.AckOutcomes {
		return nil
	}
	h.mu.Lock()
	u := h.dur.unconfirmed[exchange]
	if u == nil {
		h.mu.Unlock()
		return fmt.Errorf("%w: no outcome of %s awaits its ack", ErrUnknownExchange, exchange)
	}
	u.n--
	if u.n == 0 {
		delete(h.dur.unconfirmed, exchange)
	}
	if u.n > 0 || u.retried {
		// The record is the latest Outcome's, one of them awaiting an
		// ack, or a retry's that runs: it stays. Acks of one ID are not
		// told apart, so this one may be the latest's: a restart now
		// hands it out again (Redelivered), never loses it.
		h.mu.Unlock()
		return nil
	}
	// Queued under mu: RetryDeadLetters marks the exchange retried under
	// mu before it writes the exchange again, so this delete is never
	// applied after that write (it would drop the retried exchange from
	// the outbox).
	var b store.Batch
	b.DeleteOutgoing(uint64(exchange))
	done := make(chan error, 1)
	h.cfg.Store.CommitAsync(&b, func(err error) { done <- err })
	h.mu.Unlock()
	if err := <-done; err != nil {
		h.mu.Lock()
		// Still the application's to ack, unless a retry runs now.
		if v := h.dur.unconfirmed[exchange]; v != nil {
			v.n++
		} else if h.outboundExchange(exchange) == nil {
			u.n = 1
			h.dur.unconfirmed[exchange] = u
		}
		h.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrNotDurable, err)
	}
	return nil
}

// markRetried marks the exchanges ids that have Outcomes awaiting
// AckOutcome as retried, before RetryDeadLetters writes them again, and
// returns those it marked. The caller holds mu.
func (d *durableState) markRetried(ids []ExchangeID) []ExchangeID {
	var marked []ExchangeID
	for _, id := range ids {
		if u := d.unconfirmed[id]; u != nil {
			u.retried = true
			marked = append(marked, id)
		}
	}
	return marked
}

// unmarkRetried undoes markRetried when RetryDeadLetters could not write
// the retries: the ended records are still in the store. One whose
// Outcomes were all acknowledged meanwhile (no delete was queued: the
// record was to be the retry's) is deleted now. The caller holds mu.
func (h *Handler) unmarkRetried(marked []ExchangeID) {
	var b store.Batch
	acked := false
	for _, id := range marked {
		if u := h.dur.unconfirmed[id]; u != nil {
			u.retried = false
			continue
		}
		b.DeleteOutgoing(uint64(id))
		acked = true
	}
	if acked {
		h.write(&b)
	}
}
