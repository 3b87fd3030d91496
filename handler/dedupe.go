package handler

import (
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// dedupe remembers exchange IDs seen from each peer for a while, so that a
// resent request or message is recognised and not delivered twice, and a
// late duplicate reply is recognised and not taken for a protocol violation.
//
// Memory is bounded per peer (perPeer IDs, each forgotten after ttl), so a
// peer flooding fresh IDs only evicts its own: the peers are allowlisted,
// which bounds the total. Exchange IDs are random and never reused, so
// insertion order is expiry order and a FIFO is all the bookkeeping needed.
type dedupe struct {
	ttl     time.Duration
	perPeer int
	peers   map[peer.ID]*seenSet
	// base is when the dedupe was made: each ID records its time as the
	// time since base, which keeps an entry to 16 bytes and its queue free
	// of pointers for the garbage collector to scan (a time.Time holds
	// one), where a busy peer keeps perPeer of them.
	base time.Time
	// onEvict, if set, hears of every ID forgotten: a durable handler
	// deletes its stored record then.
	onEvict func(peer.ID, ExchangeID)
	// marked counts the IDs marked unanswered. It changes under the
	// handler's mutex, with the marks, and is read without it
	// (anyUnanswered): accept skips the mutex while no mark exists.
	marked atomic.Int64
	// lazy: IDs are indexed only once asked about (newDedupe).
	lazy bool
}

type seenSet struct {
	// ids indexes the IDs of order; nil in a lazy dedupe until the first
	// has. The marks (requests whose application ended them without a
	// reply) are apart, in marked, which is nearly always empty: keys
	// alone keep the table half the size of a map to bool, where a busy
	// peer's holds perPeer random keys, each probe likely a cache miss.
	ids    map[ExchangeID]struct{}
	marked map[ExchangeID]struct{}
	order  []seenEntry // oldest first, from head
	head   int
}

// len is how many IDs the set remembers.
func (s *seenSet) len() int { return len(s.order) - s.head }

type seenEntry struct {
	id ExchangeID
	at time.Duration // since dedupe.base
}

// newDedupe makes a dedupe. lazy is for one whose has is rare (the
// exchanges this handler completed, asked about only for a reply to one no
// longer running): a peer's IDs are then only queued until the first has
// indexes them, so that recording one costs an append rather than two
// probes (the new ID, the oldest's eviction) of a table of perPeer random
// keys. Its IDs must be added once each (add does not look for them
// before), as an exchange ends once.
func newDedupe(ttl time.Duration, perPeer int, lazy bool) *dedupe {
	return &dedupe{ttl: ttl, perPeer: perPeer, lazy: lazy, peers: make(map[peer.ID]*seenSet), base: time.Now()}
}

// add records id from p.
func (d *dedupe) add(p peer.ID, id ExchangeID, now time.Time) { d.record(p, id, now) }

// record records id from p, unless it is recorded within ttl already, and
// reports whether it was: has and add in one, which looks the peer up
// once, for the loop's every request and message. A lazy dedupe's set not
// indexed yet is not searched: had is false.
func (d *dedupe) record(p peer.ID, id ExchangeID, now time.Time) (had bool) {
	s := d.peers[p]
	if s == nil {
		s = &seenSet{}
		if !d.lazy {
			s.ids = make(map[ExchangeID]struct{})
		}
		d.peers[p] = s
	} else {
		d.trim(p, s, now)
	}
	if s.ids != nil {
		if _, ok := s.ids[id]; ok {
			return true
		}
		s.ids[id] = struct{}{}
	}
	s.order = append(s.order, seenEntry{id: id, at: now.Sub(d.base)})
	for s.len() > d.perPeer {
		d.popOldest(p, s)
	}
	return false
}

// has reports whether id from p was recorded within ttl.
func (d *dedupe) has(p peer.ID, id ExchangeID, now time.Time) bool {
	s := d.peers[p]
	if s == nil {
		return false
	}
	d.expire(p, s, now)
	d.index(s)
	_, ok := s.ids[id]
	return ok
}

// index builds s.ids, if not built yet (lazy), from the IDs queued; from
// then on record and popOldest keep it up to date.
func (d *dedupe) index(s *seenSet) {
	if s.ids != nil {
		return
	}
	s.ids = make(map[ExchangeID]struct{}, s.len())
	for _, e := range s.order[s.head:] {
		s.ids[e.id] = struct{}{}
	}
}

// markUnanswered records that the request id from p, already recorded,
// ended without its application's reply: a resend of it is refused as
// unanswered (accept), for as long as the ID is remembered.
func (d *dedupe) markUnanswered(p peer.ID, id ExchangeID) {
	s := d.peers[p]
	if s == nil {
		return
	}
	d.index(s)
	if _, ok := s.ids[id]; !ok {
		return
	}
	if _, ok := s.marked[id]; !ok {
		if s.marked == nil {
			s.marked = make(map[ExchangeID]struct{})
		}
		s.marked[id] = struct{}{}
		d.marked.Add(1)
	}
}

// anyUnanswered reports whether some ID is marked unanswered. Unlike the
// other methods it may be called without the handler's mutex: a mark set
// before the call began is seen, since the count is raised with it.
func (d *dedupe) anyUnanswered() bool { return d.marked.Load() > 0 }

// unanswered reports whether id from p is recorded, within ttl, and marked
// unanswered.
func (d *dedupe) unanswered(p peer.ID, id ExchangeID, now time.Time) bool {
	s := d.peers[p]
	if s == nil {
		return false
	}
	d.expire(p, s, now)
	_, marked := s.marked[id]
	return marked
}

// sweep forgets expired IDs of every peer, for peers that went quiet.
func (d *dedupe) sweep(now time.Time) {
	for p, s := range d.peers {
		d.expire(p, s, now)
	}
}

// expire forgets p's expired IDs, and p with them when none is left.
func (d *dedupe) expire(p peer.ID, s *seenSet, now time.Time) {
	d.trim(p, s, now)
	if s.len() == 0 {
		delete(d.peers, p)
	}
}

// trim forgets p's expired IDs, keeping s in d.peers.
func (d *dedupe) trim(p peer.ID, s *seenSet, now time.Time) {
	cutoff := now.Sub(d.base) - d.ttl
	for s.head < len(s.order) && s.order[s.head].at < cutoff {
		d.popOldest(p, s)
	}
}

func (d *dedupe) popOldest(p peer.ID, s *seenSet) {
	id := s.order[s.head].id
	if d.onEvict != nil {
		d.onEvict(p, id)
	}
	if _, ok := s.marked[id]; ok {
		delete(s.marked, id)
		d.marked.Add(-1)
	}
	if s.ids != nil {
		delete(s.ids, id)
	}
	s.order[s.head] = seenEntry{}
	s.head++
	// Compact once the dead prefix dominates, so the slice does not grow
	// with the peer's lifetime traffic.
	if s.head > 64 && s.head*2 > len(s.order) {
		s.order = append(s.order[:0], s.order[s.head:]...)
		s.head = 0
	}
}
