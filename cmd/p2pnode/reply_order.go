package main

import (
	"cmp"
	"slices"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
)

// replyOrder holds whichever of a request's reply and outcome comes first:
// a reply printed, or an outcome waiting for its reply. Both come while the
// handler runs (it hands out a reply before its OK outcome), so it holds
// only exchanges in the middle of being printed; a handler closing may drop
// a reply that did not fit in its Events channel, whose outcome then waits
// until unpaired hands it back (it carries the reply: Outcome.Reply). The
// run loop and the demo each keep one, used by one goroutine.
type replyOrder struct {
	printed map[handler.ExchangeID]bool
	waiting map[handler.ExchangeID]handler.Outcome
}

// replied records that the reply of exchange id was printed, and returns
// its outcome if that was waiting for it.
func (q *replyOrder) replied(id handler.ExchangeID) (handler.Outcome, bool) {
	if o, ok := q.waiting[id]; ok {
		delete(q.waiting, id)
		return o, true
	}
	if q.printed == nil {
		q.printed = make(map[handler.ExchangeID]bool)
	}
	q.printed[id] = true
	return handler.Outcome{}, false
}

// ended reports whether the OK outcome o may be printed now (its reply
// was); otherwise it keeps o until the reply comes.
func (q *replyOrder) ended(o handler.Outcome) bool {
	if q.printed[o.Exchange] {
		delete(q.printed, o.Exchange)
		return true
	}
	if q.waiting == nil {
		q.waiting = make(map[handler.ExchangeID]handler.Outcome)
	}
	q.waiting[o.Exchange] = o
	return false
}

// unpaired hands back, and forgets, the outcomes still waiting for a reply
// that will not come: the handler's Events channel has closed. Each
// carries its reply (Outcome.Reply), to print before it. They come in
// exchange ID order.
func (q *replyOrder) unpaired() []handler.Outcome {
	out := make([]handler.Outcome, 0, len(q.waiting))
	for _, o := range q.waiting {
		out = append(out, o)
	}
	clear(q.waiting)
	slices.SortFunc(out, func(a, b handler.Outcome) int { return cmp.Compare(a.Exchange, b.Exchange) })
	return out
}
