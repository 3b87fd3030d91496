package allowlist

import (
	"fmt"
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
)

// List is the set of peers allowed to connect, each with its optional IP
// binding. It is safe for concurrent use. Reads never block: they see an
// immutable snapshot that every mutation replaces as a whole.
//
// The zero List is empty and ready to use. The read methods also accept a
// nil *List, which admits nobody.
type List struct {
	snap atomic.Pointer[snapshot]

	// mu serializes mutations, so each builds on the one before it and its
	// Change is queued in the same order the snapshots were published.
	mu     sync.Mutex
	notify notifier
}

// New returns a list holding entries. It fails if an entry has an empty or
// malformed ID or an invalid prefix, or if two entries share an ID.
func New(entries ...Entry) (*List, error) {
	m, err := buildEntries(entries)
	if err != nil {
		return nil, fmt.Errorf("allowlist: %w", err)
	}
	l := &List{}
	l.snap.Store(newSnapshot(m))
	return l, nil
}

// load returns the current snapshot, or nil for an empty list.
func (l *List) load() *snapshot {
	if l == nil {
		return nil
	}
	return l.snap.Load()
}

// Get returns the entry for id. The entry is a copy the caller may modify.
func (l *List) Get(id peer.ID) (Entry, bool) {
	s := l.load()
	if s == nil {
		return Entry{}, false
	}
	e, ok := s.byID[id]
	if !ok {
		return Entry{}, false
	}
	return e.clone(), true
}

// Contains reports whether id is listed, whatever its IP binding.
func (l *List) Contains(id peer.ID) bool {
	s := l.load()
	if s == nil {
		return false
	}
	_, ok := s.byID[id]
	return ok
}

// Allowed reports whether id is listed and its entry admits ip. This is the
// check for a connection whose peer ID has been proved by the handshake.
func (l *List) Allowed(id peer.ID, ip netip.Addr) bool {
	s := l.load()
	if s == nil {
		return false
	}
	e, ok := s.byID[id]
	return ok && e.AllowsIP(ip)
}

// IPAllowed reports whether some entry admits ip. It lets the gater refuse a
// connection before spending a handshake on it, when only the remote IP is
// known. Any entry without a binding admits every IP.
func (l *List) IPAllowed(ip netip.Addr) bool {
	s := l.load()
	if s == nil {
		return false
	}
	return s.anyIP || s.ips.contains(ip)
}

// Entries returns a copy of the entries sorted by peer ID.
func (l *List) Entries() []Entry {
	out := l.load().sorted()
	for i := range out {
		out[i] = out[i].clone()
	}
	return out
}

// Len returns the number of entries.
func (l *List) Len() int {
	s := l.load()
	if s == nil {
		return 0
	}
	return len(s.byID)
}

// Add adds e, or replaces the entry with the same ID. It fails, leaving the
// list unchanged, if e is invalid.
func (l *List) Add(e Entry) error {
	n, err := e.normalize()
	if err != nil {
		return fmt.Errorf("allowlist: %w", err)
	}
	l.mu.Lock()
	cur := l.current()
	old, had := cur[n.ID]
	if had && old.equal(n) {
		l.mu.Unlock()
		return nil
	}
	next := make(map[peer.ID]Entry, len(cur)+1)
	maps.Copy(next, cur)
	next[n.ID] = n
	var c Change
	if had {
		c.Updated = []Entry{n.clone()}
	} else {
		c.Added = []Entry{n.clone()}
	}
	l.publishLocked(next, c)
	l.mu.Unlock()
	l.notify.drain()
	return nil
}

// Remove removes the entry for id and reports whether there was one.
func (l *List) Remove(id peer.ID) bool {
	l.mu.Lock()
	cur := l.current()
	old, had := cur[id]
	if !had {
		l.mu.Unlock()
		return false
	}
	next := maps.Clone(cur)
	delete(next, id)
	l.publishLocked(next, Change{Removed: []Entry{old.clone()}})
	l.mu.Unlock()
	l.notify.drain()
	return true
}

// Replace swaps the whole list for entries in one step: readers see either
// the old list or the new one. It validates every entry first and, on
// error, leaves the list unchanged.
func (l *List) Replace(entries []Entry) error {
	m, err := buildEntries(entries)
	if err != nil {
		return fmt.Errorf("allowlist: %w", err)
	}
	l.mu.Lock()
	l.replaceLocked(m)
	l.mu.Unlock()
	l.notify.drain()
	return nil
}

// current returns the entries of the current snapshot; l.mu must be held
// and the map must not be modified.
func (l *List) current() map[peer.ID]Entry {
	if s := l.snap.Load(); s != nil {
		return s.byID
	}
	return nil
}

// replaceLocked publishes next in place of the current entries and returns
// what changed; l.mu must be held.
func (l *List) replaceLocked(next map[peer.ID]Entry) Change {
	c := diff(l.current(), next)
	if !c.IsEmpty() {
		l.publishLocked(next, c)
	}
	return c
}

// publishLocked stores a snapshot of next and queues c for the OnChange
// subscribers; l.mu must be held. Queueing under the same lock as the store
// is what keeps notifications in mutation order.
func (l *List) publishLocked(next map[peer.ID]Entry, c Change) {
	s := newSnapshot(next)
	if prev := l.snap.Load(); prev != nil {
		s.version = prev.version + 1
	}
	l.snap.Store(s)
	l.notify.enqueue(c)
}

// OnChange registers fn to be called after every mutation that changes the
// list (Add, Remove, Replace, Reload, and reloads by Watch); mutations that
// change nothing are not reported. The node uses it to disconnect removed
// peers at once.
//
// Calls happen outside the list's locks, so fn may read or even mutate the
// list. They are never concurrent and arrive in mutation order: fn usually
// runs in the mutating goroutine before the mutation returns, but if another
// goroutine is already delivering a change, that goroutine delivers this one
// next. fn must not modify the Change.
//
// cancel unregisters fn. Once it returns, fn is not called again, except
// for a call another goroutine had already started. cancel may be called
// more than once, and from within fn.
func (l *List) OnChange(fn func(Change)) (cancel func()) {
	return l.notify.subscribe(fn)
}
