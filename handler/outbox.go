package handler

import "sync"

// outbox feeds one application channel without ever blocking the handler
// loop: events that fit go straight into the channel, the rest wait in order
// in a queue that a pump goroutine drains as the application reads. It is
// the handler's copy of the p2p node's outbox, plus a signal when the queue
// drains, which the loop uses to resume taking data from the node.
type outbox struct {
	ch    chan Event
	limit int                              // cap on queued events that are not essential
	merge func(last *Event, ev Event) bool // folds ev into the queued tail, if it can

	// drained receives a token when the queue shrinks to lowWater: once
	// per crossing, so that a reading application does not wake the loop
	// for every event.
	drained  chan struct{}
	lowWater int

	mu      sync.Mutex
	q       []Event
	head    int
	closed  bool
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	dropped uint64
}

// newOutbox starts an outbox whose channel holds size events. Past limit
// queued events, those that are not essential are dropped. drained gets a
// token each time the queue shrinks to lowWater.
func newOutbox(size, limit, lowWater int, merge func(*Event, Event) bool) *outbox {
	o := &outbox{
		ch:       make(chan Event, size),
		limit:    limit,
		merge:    merge,
		lowWater: lowWater,
		drained:  make(chan struct{}, 1),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go o.pump()
	return o
}

func (o *outbox) queuedLocked() int { return len(o.q) - o.head }

// queued is how many events wait beyond the full channel.
func (o *outbox) queued() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.queuedLocked()
}

// push delivers ev in order, queueing it if the channel is full. Essential
// events are always kept; others are dropped past the limit, so that no
// peer can grow the queue without bound. It reports the queue length.
func (o *outbox) push(ev Event, essential bool) int {
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
	} else if o.merge != nil && o.merge(&o.q[len(o.q)-1], ev) {
		return o.queuedLocked()
	}
	if !essential && o.queuedLocked() >= o.limit {
		o.dropped++
		return o.queuedLocked()
	}
	o.q = append(o.q, ev)
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return o.queuedLocked()
}

func (o *outbox) pump() {
	defer close(o.done)
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
		// The head stays queued while it is being sent, so that push keeps
		// later events behind it.
		ev := o.q[o.head]
		o.mu.Unlock()
		select {
		case o.ch <- ev:
		case <-o.stop:
			o.finish()
			return
		}
		o.mu.Lock()
		o.q[o.head] = nil
		o.head++
		if o.head == len(o.q) {
			o.q, o.head = o.q[:0], 0
		}
		n := o.queuedLocked()
		o.mu.Unlock()
		if n == o.lowWater {
			select {
			case o.drained <- struct{}{}:
			default:
			}
		}
	}
}

// finish hands over what still fits in the channel, then closes it.
func (o *outbox) finish() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	for ; o.head < len(o.q); o.head++ {
		select {
		case o.ch <- o.q[o.head]:
			continue
		default:
		}
		break
	}
	o.q = nil
	close(o.ch)
}

// close stops the pump and closes the channel. Producers must be stopped
// first; later pushes are ignored.
func (o *outbox) close() {
	select {
	case <-o.stop:
	default:
		close(o.stop)
	}
	<-o.done
}

// mergeDropped folds consecutive Dropped events of one peer into one.
func mergeDropped(last *Event, ev Event) bool {
	d, ok := ev.(Dropped)
	if !ok {
		return false
	}
	l, ok := (*last).(Dropped)
	if !ok || l.Peer != d.Peer {
		return false
	}
	l.Count += d.Count
	*last = l
	return true
}
