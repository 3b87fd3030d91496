package handler

import (
	"container/heap"
	"time"
)

// timers multiplexes every deadline of the handler (reply timeouts,
// backoffs, idle and linger timers) onto one time.Timer, so that the loop is
// the only goroutine that ever acts on them: a fired deadline is just another
// event in its select. Each exchange and each peer holds at most one entry,
// which bounds the heap by the work in progress.
type timers struct {
	h     timerHeap
	t     *time.Timer
	armed time.Time // the deadline t is set for; zero when stopped

	exchangeDue func(*exchange)
}

// timerEntry is one scheduled call: fire, or else the deadline of ex, which
// the exchange keeps in itself (exchange.tm) so that arming it allocates
// nothing. index is its place in the heap while it is there.
type timerEntry struct {
	at    time.Time
	fire  func()
	ex    *exchange
	index int
}

// newTimers returns the handler's timers; exchangeDue runs an exchange's
// deadline.
func newTimers(exchangeDue func(*exchange)) *timers {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timers{t: t, exchangeDue: exchangeDue}
}

// C is the channel the loop selects on; call expire when it fires.
func (ts *timers) C() <-chan time.Time { return ts.t.C }

// after schedules fire in d and returns its entry, for cancel.
func (ts *timers) after(d time.Duration, fire func()) *timerEntry {
	e := &timerEntry{at: time.Now().Add(d), fire: fire}
	ts.schedule(e, d)
	return e
}

// schedule (re)arms e in d, cancelling its previous deadline.
func (ts *timers) schedule(e *timerEntry, d time.Duration) {
	ts.cancel(e)
	e.at = time.Now().Add(d)
	heap.Push(&ts.h, e)
	ts.rearm()
}

// scheduled reports whether e waits in the heap.
func (ts *timers) scheduled(e *timerEntry) bool {
	return e != nil && e.index >= 0 && e.index < len(ts.h) && ts.h[e.index] == e
}

// cancel unschedules e; cancelling nil or a spent entry does nothing. The
// timer is left as it is: firing early costs one wake-up of the loop, while
// re-arming on every cancel cost one timer update per exchange.
func (ts *timers) cancel(e *timerEntry) {
	if !ts.scheduled(e) {
		return
	}
	heap.Remove(&ts.h, e.index)
}

// expire runs every entry that is due.
func (ts *timers) expire() {
	ts.armed = time.Time{}
	now := time.Now()
	for len(ts.h) > 0 && !ts.h[0].at.After(now) {
		e := heap.Pop(&ts.h).(*timerEntry)
		if e.ex != nil {
			ts.exchangeDue(e.ex)
		} else {
			e.fire()
		}
	}
	ts.rearm()
}

// rearm makes sure the timer fires no later than the earliest entry. It
// fires earlier when that entry was cancelled, and expire then re-arms.
func (ts *timers) rearm() {
	if len(ts.h) == 0 {
		return
	}
	next := ts.h[0].at
	if !ts.armed.IsZero() && !next.Before(ts.armed) {
		return
	}
	ts.armed = next
	ts.t.Reset(time.Until(next))
}

func (ts *timers) stop() { ts.t.Stop() }

type timerHeap []*timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	e := x.(*timerEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
