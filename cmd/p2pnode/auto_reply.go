package main

// --auto-reply on a full store. A reply is stored before it is sent, so a
// store past its cap refuses it (store.ErrFull) like any other addition;
// room comes back as exchanges end and the store reclaims their records.
// The request is still awaiting its answer, so the run loop tries again,
// with backoff, until the request's Deadline (the handler gives the
// application the reply timeout from when it took the request, not from
// when the loop read it: a retry after that would only hear that the
// exchange is unknown) or the node's stop, rather than leave the
// requester to fail at its reply timeout.

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// Backoff of the auto-replies a full store refused: the first retry after
// replyRetryFirst, doubling up to replyRetryMax while the store stays full.
const (
	replyRetryFirst = 50 * time.Millisecond
	replyRetryMax   = time.Second
)

// waitingReplies are the auto-replies a full store refused, oldest first,
// retried from the run loop when timer fires.
type waitingReplies struct {
	q       []waitingReply
	timer   *time.Timer // nil until the first refusal
	backoff time.Duration
}

// waitingReply is one of them: the request to answer, and until when (its
// Deadline).
type waitingReply struct {
	req      *handler.Request
	deadline time.Time
}

// due is the channel the loop waits on for the next retry: nil (never
// ready) while no reply waits.
func (w *waitingReplies) due() <-chan time.Time {
	if len(w.q) == 0 || w.timer == nil {
		return nil
	}
	return w.timer.C
}

// arm schedules the next retry after the current backoff.
func (w *waitingReplies) arm() {
	if w.timer == nil {
		w.timer = time.NewTimer(w.backoff)
		return
	}
	w.timer.Reset(w.backoff)
}

// stop stops the timer; the replies still waiting are not sent by this
// process.
func (w *waitingReplies) stop() {
	if w.timer != nil {
		w.timer.Stop()
	}
}

// autoReply answers e with its own payload (--auto-reply echo). A reply
// the full store refuses waits for room (retryReplies).
func (r *runner) autoReply(e *handler.Request) {
	w := &r.waiting
	if len(w.q) > 0 {
		// Behind the replies already waiting: the store is full for
		// this one too, and they go first.
		r.replyWaits(e, nil)
		return
	}
	err := r.h.Response(e.From, e.Exchange, e.Data)
	switch {
	case err == nil:
	case errors.Is(err, store.ErrFull):
		r.replyWaits(e, err)
	default:
		r.out.emit(p2p.Error{Peer: e.From, Err: fmt.Errorf("auto-reply %s: %w", e.Exchange, err)})
	}
}

// replyWaits queues e's auto-reply until the store has room, and says so
// (err: the store's refusal; nil: queued behind others).
func (r *runner) replyWaits(e *handler.Request, err error) {
	w := &r.waiting
	deadline := e.Deadline
	if deadline.IsZero() {
		deadline = time.Now().Add(r.replyTimeout) // not from a handler
	}
	if len(w.q) == 0 {
		w.backoff = replyRetryFirst
		w.arm()
	}
	w.q = append(w.q, waitingReply{req: e, deadline: deadline})
	if err == nil {
		err = errors.New("earlier auto-replies wait for room in the store")
	}
	r.out.emit(p2p.Error{Peer: e.From, Err: fmt.Errorf("auto-reply %s: %w; the reply waits for room, tried again until %s",
		e.Exchange, err, deadline.UTC().Format(time.RFC3339))})
	r.log.Warn("auto-reply waits for room in the store", zap.Stringer("peer", e.From),
		zap.Stringer("exchange", e.Exchange), zap.Time("until", deadline), zap.Error(err))
}

// retryReplies tries the waiting auto-replies again, oldest first, until
// the store refuses one for want of room; a reply past its deadline, or
// refused for another reason, is given up with an error event.
func (r *runner) retryReplies() {
	w := &r.waiting
	now := time.Now()
	sent := false
	for len(w.q) > 0 {
		p := w.q[0]
		e := p.req
		if !now.Before(p.deadline) {
			w.q[0] = waitingReply{}
			w.q = w.q[1:]
			r.replyGivenUp(e)
			continue
		}
		err := r.h.Response(e.From, e.Exchange, e.Data)
		if errors.Is(err, store.ErrFull) {
			break
		}
		w.q[0] = waitingReply{}
		w.q = w.q[1:]
		if errors.Is(err, handler.ErrUnknownExchange) && !time.Now().Before(p.deadline) {
			// The handler ended it at its deadline as this retry came.
			r.replyGivenUp(e)
			continue
		}
		if err != nil {
			r.out.emit(p2p.Error{Peer: e.From, Err: fmt.Errorf("auto-reply %s: %w", e.Exchange, err)})
			continue
		}
		sent = true
		r.log.Info("auto-reply sent: the store had room again", zap.Stringer("peer", e.From), zap.Stringer("exchange", e.Exchange))
	}
	if len(w.q) == 0 {
		w.q = nil
		return
	}
	if sent {
		w.backoff = replyRetryFirst
	} else {
		w.backoff = min(2*w.backoff, replyRetryMax)
	}
	w.arm()
}

// replyGivenUp says that e's auto-reply is given up at its deadline: the
// handler ends the request reply_timeout.
func (r *runner) replyGivenUp(e *handler.Request) {
	r.out.emit(p2p.Error{Peer: e.From, Err: fmt.Errorf("auto-reply %s: the store had no room for the reply within the reply timeout (%s): not answered",
		e.Exchange, r.replyTimeout)})
}

// stopWaitingReplies ends the retries as the loop ends: the node stops,
// and the requests of the replies still waiting go unanswered by this
// process (with a store, a restart before their reply timeout delivers
// them again).
func (r *runner) stopWaitingReplies() {
	w := &r.waiting
	w.stop()
	if n := len(w.q); n > 0 {
		r.log.Warn("stopping with auto-replies still waiting for room in the store: not sent", zap.Int("count", n))
	}
	w.q = nil
}
