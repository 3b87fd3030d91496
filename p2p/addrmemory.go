package p2p

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// maxRememberedAddrs bounds an addrMemory: a member could advertise
// addresses without end. When full, the entry expiring first makes room,
// which only ever lets a dial through sooner.
const maxRememberedAddrs = 4096

// addrKey is a peer and one of its addresses, without a /p2p suffix.
type addrKey struct {
	peer peer.ID
	addr string // multiaddr bytes
}

// addrMemory remembers (peer, address) pairs for a while: the addresses
// that proved to hold a key other than the peer's (wrongaddr.go), and the
// relays that refused a circuit to a peer (relay_refused.go). It is safe
// for concurrent use and starts no goroutine.
type addrMemory struct {
	now func() time.Time
	ttl time.Duration
	max int

	mu    sync.Mutex
	until map[addrKey]time.Time
}

// newAddrMemory returns a memory that keeps each pair for ttl.
func newAddrMemory(now func() time.Time, ttl time.Duration) *addrMemory {
	return &addrMemory{now: now, ttl: ttl, max: maxRememberedAddrs, until: make(map[addrKey]time.Time)}
}

// keyOf is the cache key of p at a, or false for an address that cannot
// be keyed (nil, or a bare /p2p).
func keyOf(p peer.ID, a ma.Multiaddr) (addrKey, bool) {
	if a == nil {
		return addrKey{}, false
	}
	if tpt, _ := peer.SplitAddr(a); tpt != nil {
		a = tpt
	}
	if len(a) == 0 {
		return addrKey{}, false
	}
	return addrKey{peer: p, addr: string(a.Bytes())}, true
}

// add remembers p at a for the memory's ttl.
func (w *addrMemory) add(p peer.ID, a ma.Multiaddr) {
	k, ok := keyOf(p, a)
	if !ok {
		return
	}
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, known := w.until[k]; !known && len(w.until) >= w.max {
		w.makeRoom(now)
	}
	w.until[k] = now.Add(w.ttl)
}

// makeRoom drops the expired entries or, if none has, the one expiring
// first. A linear scan: it runs only when the cache is full, which takes
// maxRememberedAddrs additions within its ttl. w.mu must be held.
func (w *addrMemory) makeRoom(now time.Time) {
	var first addrKey
	var firstAt time.Time
	dropped := false
	for k, t := range w.until {
		if !now.Before(t) {
			delete(w.until, k)
			dropped = true
			continue
		}
		if firstAt.IsZero() || t.Before(firstAt) {
			first, firstAt = k, t
		}
	}
	if !dropped && !firstAt.IsZero() {
		delete(w.until, first)
	}
}

// holds reports whether p at a was added less than ttl ago.
func (w *addrMemory) holds(p peer.ID, a ma.Multiaddr) bool {
	k, ok := keyOf(p, a)
	if !ok {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.until) == 0 {
		return false
	}
	t, known := w.until[k]
	if !known {
		return false
	}
	if !w.now().Before(t) {
		delete(w.until, k)
		return false
	}
	return true
}

// anyFor reports whether some address of p was added less than ttl ago.
// It scans the whole memory: it serves only to explain a failed dial.
func (w *addrMemory) anyFor(p peer.ID) bool {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, t := range w.until {
		if k.peer == p && now.Before(t) {
			return true
		}
	}
	return false
}
