package p2p

import "github.com/bitvmx/go-bitvmx-p2p/internal/outbox"

// Delivery is one event of the Deliveries channel (Config.Deliveries):
// what Receiver would have delivered, with Data and Status in fields of
// their own rather than boxed into an Event. A caller that takes every
// message a node receives saves two allocations per message this way (the
// Data, and the Status of its answer), the node's share of an exchange's.
type Delivery struct {
	// Kind says which field holds the event.
	Kind DeliveryKind
	// Data is the event when Kind is DeliveredData.
	Data Data
	// Status is the event when Kind is DeliveredStatus.
	Status Status
	// Event is the event when Kind is DeliveredEvent: every kind of
	// Receiver event other than Data and Status.
	Event Event
}

// DeliveryKind says which field of a Delivery holds its event.
type DeliveryKind uint8

// The kinds of Delivery.
const (
	DeliveredEvent DeliveryKind = iota
	DeliveredData
	DeliveredStatus
)

// AsEvent is d's event as Receiver would have delivered it; for Data and
// Status it boxes them (an allocation), so call it only when needed.
func (d Delivery) AsEvent() Event {
	switch d.Kind {
	case DeliveredData:
		return d.Data
	case DeliveredStatus:
		return d.Status
	default:
		return d.Event
	}
}

// A Taker takes what waits on the Deliveries channel under a lock of its
// own, rather than in a goroutine blocked reading the channel
// (Config.Taker): a stream's reader that has just delivered a message
// then hands it over itself, and no goroutine wakes only to pass it on.
// The channel stays the one queue, in order: the Taker must read it only
// while holding that lock, and hold it until what it read is applied.
type Taker interface {
	// Ready says deliveries may wait in the channel, or that it closed.
	// The node may call it under its own locks and from any goroutine: it
	// must not block nor call the node. Calls may be spurious.
	Ready()
	// Take is called by a stream's reader, holding none of the node's
	// locks, after it put deliveries in the channel without calling Ready
	// for them: take them now on this goroutine, or, if the lock is not
	// free, do what Ready does. Take may call the node (its Send included),
	// but must not wait for the node's readers.
	Take()
}

// receiver feeds the Receiver channel, or with Config.Deliveries the
// Deliveries channel: exactly one of its outboxes is set, and both carry
// the same events in the same order, so that a caller may rely on the
// order of Data, Status, Connected and Disconnected either way.
type receiver struct {
	boxed *outbox.Outbox[Event]
	typed *outbox.Outbox[Delivery]
	taker Taker // Config.Taker: told of what enters typed
}

func newReceiver(cfg Config) *receiver {
	if cfg.Deliveries {
		r := &receiver{taker: cfg.Taker}
		opts := outbox.Options[Delivery]{Limit: maxQueuedEvents}
		if r.taker != nil {
			opts.Sent = r.taker.Ready
		}
		r.typed = outbox.New(cfg.ReceiverBuffer, opts)
		return r
	}
	return &receiver{boxed: outbox.New(cfg.ReceiverBuffer, outbox.Options[Event]{Limit: maxQueuedEvents})}
}

// ready tells the Taker, if any, that deliveries wait.
func (r *receiver) ready() {
	if r.taker != nil {
		r.taker.Ready()
	}
}

// Push delivers ev as outbox.Outbox.Push does. Data and Status go through
// offerData and pushStatus instead, which do not box them; given here,
// they still take their own fields, as Delivery.Kind promises.
func (r *receiver) Push(ev Event, essential bool) {
	if r.typed == nil {
		r.boxed.Push(ev, essential)
		return
	}
	switch e := ev.(type) {
	case Data:
		r.typed.Push(Delivery{Kind: DeliveredData, Data: e}, essential)
	case Status:
		r.typed.Push(Delivery{Kind: DeliveredStatus, Status: e}, essential)
	default:
		r.typed.Push(Delivery{Event: ev}, essential)
	}
	r.ready()
}

// offerData delivers d as outbox.Outbox.Offer does. With reader, the
// caller is a stream's reader that calls Taker.Take before it waits for
// anything again, in place of Ready now.
func (r *receiver) offerData(d Data, reader bool) bool {
	if r.typed == nil {
		return r.boxed.Offer(d)
	}
	if !r.typed.Offer(Delivery{Kind: DeliveredData, Data: d}) {
		return false
	}
	if !reader {
		r.ready()
	}
	return true
}

// pushStatus delivers s, an essential event; reader as for offerData.
func (r *receiver) pushStatus(s Status, reader bool) {
	if r.typed == nil {
		r.boxed.Push(s, true)
		return
	}
	r.typed.Push(Delivery{Kind: DeliveredStatus, Status: s}, true)
	if !reader {
		r.ready()
	}
}

// Close closes the outbox in use.
func (r *receiver) Close() {
	if r.typed == nil {
		r.boxed.Close()
		return
	}
	r.typed.Close()
	r.ready() // the Taker learns that the channel closed
}

// Deliveries is the channel of data and events from a node started with
// Config.Deliveries, in place of Receiver; nil otherwise. It is closed
// after Close.
func (n *Node) Deliveries() <-chan Delivery {
	if n.events.typed == nil {
		return nil
	}
	return n.events.typed.C()
}
