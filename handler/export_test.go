package handler

import "time"

// WaitState waits until exchange id (dialed or received) is in state s, and
// reports whether it got there within timeout. Tests use it to reach a
// state before injecting a fault.
func (h *Handler) WaitState(id ExchangeID, s State, timeout time.Duration) bool {
	w := stateWait{id: id, state: s, done: make(chan struct{})}
	if h.post(w) != nil {
		return false
	}
	select {
	case <-w.done:
		return true
	case <-time.After(timeout):
		return false
	}
}
