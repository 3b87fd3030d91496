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
}

type seenSet struct {
	// ids maps each ID to whether it was marked unanswered (a request
	// whose application ended it without a reply).
	ids   map[ExchangeID]bool
	order []seenEntry // oldest first, from head
	head  int
}

type seenEntry struct {
	id ExchangeID
	at time.Duration // since dedupe.base
}

func newDedupe(ttl time.Duration, perPeer int) *dedupe {
	return &dedupe{ttl: ttl, perPeer: perPeer, peers: make(map[peer.ID]*seenSet), base: time.Now()}
}

// add records id from p.
func (d *dedupe) add(p peer.ID, id ExchangeID, now time.Time) {
	s := d.peers[p]
	if s == nil {
		s = &seenSet{ids: make(map[ExchangeID]bool)}
		d.peers[p] = s
	}
	if _, ok := s.ids[id]; ok {
		return
	}
	s.ids[id] = false
	s.order = append(s.order, seenEntry{id: id, at: now.Sub(d.base)})
	for len(s.ids) > d.perPeer {
		d.popOldest(p, s)
	}
	d.expire(p, s, now)
}

// has reports whether id from p was recorded within ttl.
func (d *dedupe) has(p peer.ID, id ExchangeID, now time.Time) bool {
	s := d.peers[p]
	if s == nil {
		return false
	}
	d.expire(p, s, now)
	_, ok := s.ids[id]
	return ok
}

// markUnanswered records that the request id from p, already recorded,
// ended without its application's reply: a resend of it is refused as
// unanswered (accept), for as long as the ID is remembered.
func (d *dedupe) markUnanswered(p peer.ID, id ExchangeID) {
	if s := d.peers[p]; s != nil {
		if marked, ok := s.ids[id]; ok && !marked {
			s.ids[id] = true
			d.marked.Add(1)
		}
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
	return s.ids[id]
}

// sweep forgets expired IDs of every peer, for peers that went quiet.
func (d *dedupe) sweep(now time.Time) {
	for p, s := range d.peers {
		d.expire(p, s, now)
	}
}

func (d *dedupe) expire(p peer.ID, s *seenSet, now time.Time) {
	cutoff := now.Sub(d.base) - d.ttl
	for s.head < len(s.order) && s.order[s.head].at < cutoff {
		d.popOldest(p, s)
	}
	if len(s.ids) == 0 {
		delete(d.peers, p)
	}
}

func (d *dedupe) popOldest(p peer.ID, s *seenSet) {
	id := s.order[s.head].id
	if d.onEvict != nil {
		d.onEvict(p, id)
	}
	if s.ids[id] {
		d.marked.Add(-1)
	}
	delete(s.ids, id)
	s.order[s.head] = seenEntry{}
	s.head++
	// Compact once the dead prefix dominates, so the slice does not grow
	// with the peer's lifetime traffic.
	if s.head > 64 && s.head*2 > len(s.order) {
		s.order = append(s.order[:0], s.order[s.head:]...)
		s.head = 0
	}
}
