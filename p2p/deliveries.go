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

// receiver feeds the Receiver channel, or with Config.Deliveries the
// Deliveries channel: exactly one of its outboxes is set, and both carry
// the same events in the same order, so that a caller may rely on the
// order of Data, Status, Connected and Disconnected either way.
type receiver struct {
	boxed *outbox.Outbox[Event]
	typed *outbox.Outbox[Delivery]
}

func newReceiver(cfg Config) *receiver {
	opts := outbox.Options[Delivery]{Limit: maxQueuedEvents}
	if cfg.Deliveries {
		return &receiver{typed: outbox.New(cfg.ReceiverBuffer, opts)}
	}
	return &receiver{boxed: outbox.New(cfg.ReceiverBuffer, outbox.Options[Event]{Limit: maxQueuedEvents})}
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
}

// offerData delivers d as outbox.Outbox.Offer does.
func (r *receiver) offerData(d Data) bool {
	if r.typed != nil {
		return r.typed.Offer(Delivery{Kind: DeliveredData, Data: d})
	}
	return r.boxed.Offer(d)
}

// pushStatus delivers s, an essential event.
func (r *receiver) pushStatus(s Status) {
	if r.typed != nil {
		r.typed.Push(Delivery{Kind: DeliveredStatus, Status: s}, true)
		return
	}
	r.boxed.Push(s, true)
}

// Close closes the outbox in use.
func (r *receiver) Close() {
	if r.typed != nil {
		r.typed.Close()
		return
	}
	r.boxed.Close()
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
