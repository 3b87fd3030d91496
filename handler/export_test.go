package handler

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// WaitState waits until exchange id (dialed or received) is in state s, and
// reports whether it got there within timeout. Tests use it to reach a
// state before injecting a fault.
func (h *Handler) WaitState(id ExchangeID, s State, timeout time.Duration) bool {
	return h.await(stateWait{id: id, state: s, done: make(chan struct{})}, timeout)
}

// await posts w to the loop and waits for it to be released.
func (h *Handler) await(w stateWait, timeout time.Duration) bool {
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

// WaitGone waits until no exchange id (dialed or received) is running, and
// reports whether that happened within timeout: for an exchange that ends
// without an Outcome to wait for (a replayed reply).
func (h *Handler) WaitGone(id ExchangeID, timeout time.Duration) bool {
	return h.WaitState(id, "", timeout)
}

// FireDeadline runs the armed deadline of dialed exchange id now, as its
// timer would when it fires, and reports whether there was one. Tests use
// it to put a deadline at a chosen point of a race.
func (h *Handler) FireDeadline(id ExchangeID) bool {
	fired := false
	_ = h.apply(true, func() {
		for _, ps := range h.peers {
			if ex := ps.outbound[id]; ex != nil && h.timers.scheduled(&ex.tm) {
				h.stopTimer(ex)
				h.exchangeDue(ex)
				fired = true
			}
		}
	})
	return fired
}

// WaitPaused waits until the loop has stopped taking data from the node
// because the application fell behind (MaxBacklog), and reports whether
// it did within timeout.
func (h *Handler) WaitPaused(timeout time.Duration) bool {
	return h.await(stateWait{paused: true, done: make(chan struct{})}, timeout)
}

// EndClosed ends the received request id from p as Close does when its
// deadline passes with the request unanswered (abort), without closing:
// tests use it to call Response between that end and the loop's exit, a
// window too short to reach through Close.
func (h *Handler) EndClosed(p peer.ID, id ExchangeID) bool {
	ended := false
	_ = h.apply(true, func() {
		if ps := h.peers[p]; ps != nil && ps.inbound[id] != nil {
			h.end(ps.inbound[id], ReasonClosed, ErrClosed)
			ended = true
		}
	})
	return ended
}

// InboxUse is what p holds against its inbox bounds (MaxInboxPerPeer,
// MaxInboxBytesPerPeer): requests and messages, and their bytes.
func (h *Handler) InboxUse(p peer.ID) (n, bytes int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.inboxUse(p)
	return u.n, u.bytes
}

// HeldBytes is what every peer's exchanges hold in memory (hold).
func (h *Handler) HeldBytes() int64 { return h.heldBytes.Load() }

// InboxTotal is what every peer holds against MaxInboxBytes: the sum of
// their InboxUse bytes.
func (h *Handler) InboxTotal() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inboxTotal()
}

// MaxInboxBytes is Config.MaxInboxBytes, its default applied.
func (h *Handler) MaxInboxBytes() int { return h.cfg.MaxInboxBytes }

// MaxInboxBytesPerPeer is Config.MaxInboxBytesPerPeer, its default applied.
func (h *Handler) MaxInboxBytesPerPeer() int { return h.cfg.MaxInboxBytesPerPeer }

// CallsWaiting adds n to the API calls counted as waiting for the
// handler's lock (endCall), as if other goroutines were about to apply
// theirs.
func (h *Handler) CallsWaiting(n int32) { h.calls.Add(n) }

// Deferred is how many messages API calls sent and left buffered for the
// calls after them to flush.
func (h *Handler) Deferred() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.deferred
}
