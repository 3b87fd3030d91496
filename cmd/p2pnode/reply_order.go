package main

import "github.com/bitvmx/go-bitvmx-p2p/handler"

// replyOrder holds whichever of a request's reply and outcome comes first:
// a reply printed, or an outcome waiting for its reply. Both always come
// (the handler hands out a reply before its OK outcome), so it holds only
// exchanges in the middle of being printed. The run loop and the demo each
// keep one, used by one goroutine.
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
