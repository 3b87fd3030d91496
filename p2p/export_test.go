package p2p

import (
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// WithDrainWait sets how long a disconnection waits for the peer to close
// its half of a stream, in place of the default (drain.go): tests make it
// long, so that a drain cannot end by its timeout before they are done.
func WithDrainWait(d time.Duration) func(*Config) {
	return func(c *Config) { c.drainWait = d }
}

// SetSendCloseHooks stops n at the two sides of the race between Send and
// Close: enqueue runs in Send's slow way between its closed check and its
// handoff to the node loop, barrier in Close just before Close waits for
// those handoffs. Set them before the node is used.
func SetSendCloseHooks(n *Node, enqueue, barrier func()) {
	n.hooks.enqueue = enqueue
	n.hooks.closeBarrier = barrier
}

// SaveKeyHooked is SaveKey calling beforeSync once the key's bytes are
// written under the temporary name, before they are synced; an error from
// it fails the save as a failed write would.
func SaveKeyHooked(path string, k crypto.PrivKey, beforeSync func() error) error {
	return saveKey(path, k, beforeSync)
}

// WithDisconnectHook has f run inside each DisconnectFrom between marking
// the peer's connections closing and taking the list of its streams to
// drain: a test opens a stream there, in what was once a window in which
// it was neither drained nor refused.
func WithDisconnectHook(f func()) func(*Config) {
	return func(c *Config) { c.disconnectHook = f }
}
