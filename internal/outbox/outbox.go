// Package outbox feeds a caller-facing channel from a producer that must
// never block on the caller: the p2p node's network side, the handler's loop.
//
// Events that fit go straight into the channel; the rest wait, in order, in
// a queue that a pump goroutine drains as the caller reads. Why a queue and
// not a blocking send: a caller that writes many commands before reading
// anything would otherwise deadlock against a producer blocked on delivering
// their results.
package outbox

import "sync"

// Options tune an Outbox. The zero value queues up to Limit events with no
// merging and no drain signal.
type Options[T any] struct {
	// Limit caps the queued events that are not essential; past it they are
	// dropped, so that no remote party can grow the queue without bound.
	Limit int
	// Merge, if set, may fold a new event into the queued tail (for
	// example, counts of drops from one peer) and reports whether it did.
	Merge func(last *T, ev T) bool
	// LowWater is the queue length at which Drained receives a token (0:
	// when the queue empties): a producer that paused because the caller
	// fell behind learns when to resume, once per crossing. A producer
	// that never pauses can ignore Drained.
	LowWater int
	// Sent, if set, is called by the pump each time it has moved a queued
	// event into the channel, outside the outbox's lock: for a caller that
	// is told of events waiting there rather than blocked reading the
	// channel. Events that Push or Offer put straight into the channel
	// are their caller's to tell of.
	Sent func()
}

// Outbox delivers events to one channel in order. Create it with New and
// stop it with Close; all methods are safe for concurrent use.
type Outbox[T any] struct {
	ch      chan T
	opts    Options[T]
	drained chan struct{}

	mu   sync.Mutex
	q    []T
	head int
	// sending: the pump holds a copy of q[head] and is sending it, so
	// that event is no longer the queue's to change (Merge must not fold
	// into it, or the folded event would be lost).
	sending bool
	closed  bool
	left    []T // what Close could not hand over (Left)
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}

	// taken, if set (tests only, before the pump starts), is called by the
	// pump each time it has taken the head event to send it.
	taken func(T)
}

// New starts an outbox whose channel holds size events, and its pump.
func New[T any](size int, opts Options[T]) *Outbox[T] {
	o := newOutbox(size, opts)
	go o.pump()
	return o
}

// newOutbox is New without the pump, which the caller starts with
// `go o.pump()`.
func newOutbox[T any](size int, opts Options[T]) *Outbox[T] {
	return &Outbox[T]{
		ch:      make(chan T, size),
		opts:    opts,
		drained: make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// C is the channel the caller reads. It is closed by Close.
func (o *Outbox[T]) C() <-chan T { return o.ch }

// Drained receives a token each time the queue shrinks to Options.LowWater.
func (o *Outbox[T]) Drained() <-chan struct{} { return o.drained }

func (o *Outbox[T]) queuedLocked() int { return len(o.q) - o.head }

// Queued is how many events wait beyond the full channel.
func (o *Outbox[T]) Queued() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.queuedLocked()
}

// Offer delivers ev only if it can go straight into the channel with nothing
// queued ahead of it, and reports whether it did. For data whose sender is
// told "busy" when the caller has no room.
func (o *Outbox[T]) Offer(ev T) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || o.queuedLocked() > 0 {
		return false
	}
	select {
	case o.ch <- ev:
		return true
	default:
		return false
	}
}

// Push delivers ev in order, queueing it if the channel is full. Essential
// events are always kept (their number must be bounded by the caller's own
// actions); others are dropped past Options.Limit. It reports how many events
// are queued afterwards. After Close it does nothing.
func (o *Outbox[T]) Push(ev T, essential bool) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0
	}
	if o.queuedLocked() == 0 {
		select {
		case o.ch <- ev:
			return 0
		default:
		}
	} else if o.opts.Merge != nil && (!o.sending || o.queuedLocked() > 1) &&
		o.opts.Merge(&o.q[len(o.q)-1], ev) {
		// The tail is not the event the pump is sending.
		return o.queuedLocked()
	}
	if !essential && o.queuedLocked() >= o.opts.Limit {
		return o.queuedLocked()
	}
	if len(o.q) == cap(o.q) && o.head > 0 && o.head >= len(o.q)/2 {
		// Reuse the delivered prefix instead of growing: a queue that
		// never empties (a caller always a little behind) would otherwise
		// keep a slot for every event that ever passed through it. At
		// least half the slice is delivered, so the copy is amortized;
		// the pump finds the event it may be sending at the new head.
		n := copy(o.q, o.q[o.head:])
		clear(o.q[n:])
		o.q, o.head = o.q[:n], 0
	}
	o.q = append(o.q, ev)
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return o.queuedLocked()
}

func (o *Outbox[T]) pump() {
	defer close(o.done)
	var zero T
	for {
		o.mu.Lock()
		if o.queuedLocked() == 0 {
			o.mu.Unlock()
			select {
			case <-o.wake:
				continue
			case <-o.stop:
				o.finish()
				return
			}
		}
		// The head stays queued while it is being sent, so that Push keeps
		// later events behind it.
		ev := o.q[o.head]
		o.sending = true
		o.mu.Unlock()
		if o.taken != nil {
			o.taken(ev)
		}
		select {
		case o.ch <- ev:
		case <-o.stop:
			o.finish()
			return
		}
		if o.opts.Sent != nil {
			o.opts.Sent()
		}
		o.mu.Lock()
		o.sending = false
		o.q[o.head] = zero
		o.head++
		if o.head == len(o.q) {
			o.q, o.head = o.q[:0], 0
		}
		n := o.queuedLocked()
		o.mu.Unlock()
		if n == o.opts.LowWater {
			select {
			case o.drained <- struct{}{}:
			default:
			}
		}
	}
}

// finish hands over what still fits in the channel, then closes it.
func (o *Outbox[T]) finish() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	o.sending = false
	for ; o.head < len(o.q); o.head++ {
		select {
		case o.ch <- o.q[o.head]:
			continue
		default:
		}
		break
	}
	if o.head < len(o.q) {
		o.left = append([]T(nil), o.q[o.head:]...)
	}
	o.q = nil
	close(o.ch)
}

// Left returns, once Close has returned, the events it could not hand over
// (they did not fit in the channel), oldest first, for an owner that must
// not lose them to keep elsewhere.
func (o *Outbox[T]) Left() []T {
	<-o.done
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.left
}

// Close stops the pump and closes the channel, after handing over what
// still fits in it. Producers should be stopped first; later pushes are
// ignored.
func (o *Outbox[T]) Close() {
	select {
	case <-o.stop:
	default:
		close(o.stop)
	}
	<-o.done
}
