package p2p

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// maxHoldWait bounds how long a DisconnectFrom waits for the holds on a
// peer's connections (Node.Hold): a hold that is never released must not
// keep a connection the handler asked to close.
const maxHoldWait = 30 * time.Second

// Hold keeps DisconnectFrom from closing the connections to p until release
// is called, for a protocol that runs beside the message streams on the
// same connections (the membership gossip): the exchange handler closes a
// connection as soon as its exchange is done, which would otherwise cut
// such a session short. A DisconnectFrom meanwhile drains the message
// streams as usual, then closes the connections once the last hold on p is
// released, or maxHoldWait after the drain. Close does not wait for holds.
// Calling release more than once releases once.
func (n *Node) Hold(p peer.ID) (release func()) {
	n.holds.add(p)
	var once sync.Once
	return func() { once.Do(func() { n.holds.release(p) }) }
}

// holdSet counts the holds on each peer's connections.
type holdSet struct {
	mu       sync.Mutex
	count    map[peer.ID]int
	released chan struct{} // closed, and replaced, when a hold is released
}

func (h *holdSet) add(p peer.ID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.count == nil {
		h.count = make(map[peer.ID]int)
	}
	h.count[p]++
}

func (h *holdSet) release(p peer.ID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.count[p]--; h.count[p] <= 0 {
		delete(h.count, p)
	}
	if h.released != nil {
		close(h.released)
		h.released = nil
	}
}

// held reports whether p's connections are held.
func (h *holdSet) held(p peer.ID) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count[p] > 0
}

// wait returns once nothing holds p's connections, after at most max, or
// when stop is closed.
func (h *holdSet) wait(p peer.ID, max time.Duration, stop <-chan struct{}) {
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		if h.count[p] == 0 {
			h.mu.Unlock()
			return
		}
		if h.released == nil {
			h.released = make(chan struct{})
		}
		released := h.released
		h.mu.Unlock()
		select {
		case <-released:
		case <-deadline.C:
			return
		case <-stop:
			return
		}
	}
}
