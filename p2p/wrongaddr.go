package p2p

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"
)

// Wrong addresses.
//
// An address is only a hint: Noise proves the key at the far end, so a
// dial to peer A at an address where some other node W listens fails with
// a peer ID mismatch and cannot impersonate anyone. But each such dial
// still reaches W, which spends a signature and a Diffie-Hellman on a
// handshake the dialer then declines, and charges this node's IP for it
// (ratelimit.DeclinedHandshake). A hostile member can provoke that at will:
// it advertises W's address as its own (in identify or in its DHT record),
// sends this node requests and hangs up, and every reply is dialed back to
// W. So an address that proved another key is not dialed for that peer
// again for wrongAddrTTL: the gater refuses the dial (InterceptAddrDial),
// whatever re-adds the address (a fresh identify, a DHT record, the
// handler's redials), and it is dropped from the peerstore. At most one
// dial per address and wrongAddrTTL then reaches W on A's word.
//
// Nobody is charged for it: addresses go stale honestly (a peer moved, and
// another member took its old address), and the dialer cannot tell that
// from a lie. The dial is logged and counted instead
// (bitvmx_p2p_wrong_address_dials_total).

const (
	// wrongAddrTTL is how long an address that proved another key is not
	// dialed for the peer that was expected there. Long enough that a
	// peer advertising someone else's address gets this node to knock
	// there a handful of times an hour at most; short enough that a
	// member who really does move to an address another member left is
	// reachable there again soon (it is reachable at its other addresses
	// meanwhile).
	wrongAddrTTL = 10 * time.Minute

	// maxWrongAddrs bounds the memory: a member could advertise
	// addresses without end. When full, the entry expiring first makes
	// room, which only ever lets a dial through sooner.
	maxWrongAddrs = 4096
)

// wrongAddrKey is a peer and one of its addresses, without a /p2p suffix.
type wrongAddrKey struct {
	peer peer.ID
	addr string // multiaddr bytes
}

// wrongAddrs remembers which addresses proved to hold a key other than
// the one dialed there. It is safe for concurrent use and starts no
// goroutine.
type wrongAddrs struct {
	now func() time.Time
	ttl time.Duration
	max int

	mu    sync.Mutex
	until map[wrongAddrKey]time.Time
}

// newWrongAddrs remembers each address for ttl (the same type keeps the
// circuits relays refused, relay_refused.go).
func newWrongAddrs(now func() time.Time, ttl time.Duration) *wrongAddrs {
	return &wrongAddrs{now: now, ttl: ttl, max: maxWrongAddrs, until: make(map[wrongAddrKey]time.Time)}
}

// keyOf is the cache key of p at a, or false for an address that cannot
// be keyed (nil, or a bare /p2p).
func keyOf(p peer.ID, a ma.Multiaddr) (wrongAddrKey, bool) {
	if a == nil {
		return wrongAddrKey{}, false
	}
	if tpt, _ := peer.SplitAddr(a); tpt != nil {
		a = tpt
	}
	if len(a) == 0 {
		return wrongAddrKey{}, false
	}
	return wrongAddrKey{peer: p, addr: string(a.Bytes())}, true
}

// add records that a proved not to hold p's key.
func (w *wrongAddrs) add(p peer.ID, a ma.Multiaddr) {
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
// maxWrongAddrs mismatched dials within wrongAddrTTL. w.mu must be held.
func (w *wrongAddrs) makeRoom(now time.Time) {
	var first wrongAddrKey
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

// wrong reports whether a proved not to hold p's key less than ttl ago.
func (w *wrongAddrs) wrong(p peer.ID, a ma.Multiaddr) bool {
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

// anyFor reports whether some address proved not to hold p's key less than
// ttl ago. It scans the whole cache: it serves only to explain a failed
// dial.
func (w *wrongAddrs) anyFor(p peer.ID) bool {
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

// wrongAddr is told that a dial to expected at a proved actual's key:
// a is not dialed for expected for a while, and leaves its addresses.
func (n *Node) wrongAddr(expected, actual peer.ID, a ma.Multiaddr) {
	n.wrong.add(expected, a)
	n.metrics.wrongAddrDial()
	n.log.Info("address holds another peer's key: not dialing it for this peer for a while",
		zap.Stringer("peer", expected), zap.String("peer_name", n.refusals.name(expected)),
		zap.Stringer("addr", a), zap.Stringer("found", actual), zap.String("found_name", n.refusals.name(actual)),
		zap.Duration("for", n.wrong.ttl))
	if n.started.Load() {
		n.host.Peerstore().SetAddr(expected, a, 0)
	}
}
