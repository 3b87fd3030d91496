package allowlist

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Change describes what one mutation did to a List. Each slice is sorted by
// peer ID.
type Change struct {
	// Added holds the entries whose ID was not listed before.
	Added []Entry
	// Removed holds the entries that are no longer listed, as they were.
	Removed []Entry
	// Updated holds the new version of entries whose ID stayed listed but
	// whose name or binding changed. A narrowed binding can make a connected
	// peer's IP no longer allowed, so the node rechecks these too.
	Updated []Entry
}

// IsEmpty reports whether the change changed nothing.
func (c Change) IsEmpty() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Updated) == 0
}

// diff returns what turns old into next. The entries are cloned: the change
// outlives the lock and must not share memory with the snapshots.
func diff(old, next map[peer.ID]Entry) Change {
	var c Change
	for id, n := range next {
		o, ok := old[id]
		switch {
		case !ok:
			c.Added = append(c.Added, n.clone())
		case !o.equal(n):
			c.Updated = append(c.Updated, n.clone())
		}
	}
	for id, o := range old {
		if _, ok := next[id]; !ok {
			c.Removed = append(c.Removed, o.clone())
		}
	}
	byID := func(a, b Entry) int { return strings.Compare(string(a.ID), string(b.ID)) }
	slices.SortFunc(c.Added, byID)
	slices.SortFunc(c.Removed, byID)
	slices.SortFunc(c.Updated, byID)
	return c
}

// notifier delivers changes to subscribers in order, one at a time, without
// holding any lock while a subscriber runs.
//
// Holding a lock across the callbacks would deadlock a subscriber that
// touches the list (removing a peer that misbehaved while handling a change
// is natural), and calling them in the mutating goroutine without
// coordination would let two mutations' changes overtake each other. So
// mutations enqueue under the list's lock, and whichever goroutine finds
// nobody delivering becomes the deliverer until the queue is empty.
type notifier struct {
	mu         sync.Mutex
	subs       []*subscription // copy-on-write: deliverers iterate without mu
	pending    []Change
	delivering bool
}

type subscription struct {
	fn       func(Change)
	canceled atomic.Bool
}

func (n *notifier) subscribe(fn func(Change)) (cancel func()) {
	if fn == nil {
		return func() {}
	}
	s := &subscription{fn: fn}
	n.mu.Lock()
	n.subs = append(slices.Clip(n.subs), s)
	n.mu.Unlock()
	return func() {
		if s.canceled.Swap(true) {
			return
		}
		n.mu.Lock()
		n.subs = slices.DeleteFunc(slices.Clone(n.subs), func(x *subscription) bool { return x == s })
		n.mu.Unlock()
	}
}

// enqueue queues c for delivery by the next drain.
func (n *notifier) enqueue(c Change) {
	n.mu.Lock()
	n.pending = append(n.pending, c)
	n.mu.Unlock()
}

// drain delivers queued changes unless another goroutine already is, in
// which case that goroutine delivers them.
func (n *notifier) drain() {
	n.mu.Lock()
	if n.delivering || len(n.pending) == 0 {
		n.mu.Unlock()
		return
	}
	n.delivering = true
	// If a subscriber panics, the panic reaches the mutating caller; the
	// notifier must still hand over, or every later change would queue
	// forever behind a deliverer that is gone.
	done := false
	defer func() {
		if !done {
			n.mu.Lock()
			n.delivering = false
			n.mu.Unlock()
		}
	}()
	for len(n.pending) > 0 {
		c := n.pending[0]
		n.pending[0] = Change{}
		n.pending = n.pending[1:]
		subs := n.subs
		n.mu.Unlock()
		for _, s := range subs {
			if !s.canceled.Load() {
				s.fn(c)
			}
		}
		n.mu.Lock()
	}
	// Seeing the queue empty and stepping down must be one critical
	// section: a change enqueued in between would find a deliverer that is
	// about to leave and never be delivered.
	n.pending = nil
	n.delivering = false
	done = true
	n.mu.Unlock()
}
