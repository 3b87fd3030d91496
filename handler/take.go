package handler

// The node's deliveries reach the state machine in two ways. The loop
// takes them when the node rings (taker.Ready); a stream's reader that
// has just delivered a message applies it itself when mu is free
// (taker.Take), which spares the loop's wakeup, a goroutine hand-off per
// message. Either way they are read from the node's Deliveries channel
// under mu only, and applied before mu is released, so the channel stays
// the one queue and nothing overtakes what the node delivered before it.

// taker is the handler's p2p.Taker.
type taker struct{ h *Handler }

// Ready wakes the loop: deliveries wait in the node's channel.
func (t taker) Ready() { t.h.ring() }

// Take applies on the calling reader the deliveries waiting in the
// node's channel, or leaves them to the loop when mu is taken, when an
// Observe hook must see them first (outside mu, which only the loop can
// do in order), when the application is behind (paused: the loop resumes
// taking them once it caught up), before the loop began (the handler is
// still being built or resumed), and once the handler is shutting down.
func (t taker) Take() {
	h := t.h
	if h.cfg.Observe != nil || !h.mu.TryLock() {
		h.ring()
		return
	}
	defer h.mu.Unlock()
	if !h.running || h.exited || h.stopping {
		h.ring()
		return
	}
	data := h.node.Deliveries()
	for range maxDrain {
		if h.paused {
			return
		}
		select {
		case d, ok := <-data:
			if !ok {
				h.ring() // the loop ends the handler
				return
			}
			h.nodeEvent(d)
			h.afterInput() // not stopping: it cannot end the loop
		default:
			return
		}
	}
	h.ring() // more may wait: the loop takes them, between its other inputs
}

// ring wakes the loop to take the node's deliveries.
func (h *Handler) ring() {
	select {
	case h.bell <- struct{}{}:
	default:
	}
}
