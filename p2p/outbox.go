package p2p

import "sync"

// outbox feeds one caller-facing channel without ever blocking the network
// side. Events that fit go straight into the channel; the rest wait in an
// ordered queue that a pump goroutine drains as the caller reads.
//
// Why a queue and not a blocking send: a caller that writes many SendMsg
// before reading anything would otherwise deadlock against a node blocked on
// delivering their Status events.
type outbox struct {
	ch    chan Event
	limit int                              // cap on queued events that are not essential
	merge func(last *Event, ev Event) bool // folds ev into the queued tail, if it can

	mu      sync.Mutex
	q       []Event
	head    int
	closed  bool
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	dropped uint64
}

func newOutbox(size, limit int, merge func(*Event, Event) bool) *outbox {
	o := &outbox{
		ch:    make(chan Event, size),
		limit: limit,
		merge: merge,
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go o.pump()
	return o
}

func (o *outbox) queued() int { return len(o.q) - o.head }

// offer delivers ev only if it can go straight into the channel with nothing
// queued ahead of it. Received data uses it: a full buffer means "busy".
func (o *outbox) offer(ev Event) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || o.queued() > 0 {
		return false
	}
	select {
	case o.ch <- ev:
		return true
	default:
		return false
	}
}

// push delivers ev in order, queueing it if the channel is full. Essential
// events (Status) are always kept: their number is bounded by the caller's
// own sends. Others are dropped past the limit, so that no peer can grow the
// queue by churning connections.
func (o *outbox) push(ev Event, essential bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	if o.queued() == 0 {
		select {
		case o.ch <- ev:
			return
		default:
		}
	} else if o.merge != nil && o.merge(&o.q[len(o.q)-1], ev) {
		return
	}
	if !essential && o.queued() >= o.limit {
		o.dropped++
		return
	}
	o.q = append(o.q, ev)
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *outbox) pump() {
	defer close(o.done)
	for {
		o.mu.Lock()
		if o.queued() == 0 {
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
		o.mu.Unlock()
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
	l.MsgID = d.MsgID
	*last = l
	return true
}
