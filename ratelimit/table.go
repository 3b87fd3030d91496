package ratelimit

import (
	"sync"
	"sync/atomic"
)

const (
	// maxShards splits a table so that the gater's lookups on every
	// connection and the spends of busy peers rarely meet on one lock.
	maxShards = 16

	// minShardKeys keeps small tables in few shards: per-shard LRU only
	// approximates a global LRU, and with a handful of keys per shard the
	// approximation would be poor (and a tiny MaxKeys would round to zero).
	minShardKeys = 64
)

// table tracks the buckets of one kind of key. It is split into shards by a
// seeded hash of the key; each shard has its own lock, map, lists and share
// of MaxKeys, so the cap and the LRU order hold per shard.
type table[K comparable] struct {
	p      *policy
	shards []shard[K]
	shift  uint // a hash's top bits pick its shard: h >> shift
}

// shard is one lock's worth of a table.
type shard[K comparable] struct {
	p        *policy
	mu       sync.RWMutex
	entries  map[K]*entry[K]
	active   list[K] // not banned, least recently charged at the back
	banned   list[K] // banned (or lapsed, not yet noticed), the ban ending first at the front
	capacity int

	// nbanned counts the entries on the banned list. Read without the
	// lock, it lets a lookup skip the lock entirely in the usual case of
	// a shard with no ban at all.
	nbanned atomic.Int32

	// The counters are written under mu but are atomic so that Stats can
	// read them without taking any lock.
	spent         [numReasons]atomic.Uint64
	exhaustions   atomic.Uint64
	evictions     atomic.Uint64
	evictedBanned atomic.Uint64
	keys          atomic.Int64

	// Shards sit side by side in a slice; the pad keeps one shard's hot
	// lock and counters off its neighbour's cache line.
	_ [64]byte
}

func newTable[K comparable](p *policy, maxKeys int) table[K] {
	n, bits := maxShards, uint(4)
	for n > 1 && maxKeys/n < minShardKeys {
		n, bits = n/2, bits-1
	}
	t := table[K]{p: p, shards: make([]shard[K], n), shift: 64 - bits}
	for i := range t.shards {
		// Spread the remainder so that the capacities add up to
		// exactly maxKeys.
		c := maxKeys / n
		if i < maxKeys%n {
			c++
		}
		t.shards[i].p = p
		t.shards[i].capacity = c
		t.shards[i].entries = make(map[K]*entry[K])
	}
	return t
}

func (t *table[K]) shard(h uint64) *shard[K] {
	// With one shard, shift is 64 and the shift yields 0, as Go defines.
	return &t.shards[h>>t.shift]
}

// spend charges k (whose hash is h) for reason r: one token, or the share
// of one that r costs (Reason.cost).
func (t *table[K]) spend(h uint64, k K, r Reason) Verdict {
	p := t.p
	s := t.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	// Read the clock under the lock so that each bucket sees time move
	// forward only.
	now := p.tick()

	if r.valid() {
		s.spent[r].Add(1)
	} else {
		s.spent[0].Add(1)
	}

	e := s.entries[k]
	switch {
	case e == nil:
		e = s.insert(k, now)
	case e.banned:
		if now < e.until {
			// Already refused: the charge is counted but changes
			// nothing, so late echoes of what got the key banned
			// (acks timing out after the disconnect) cannot
			// prolong the ban.
			return Verdict{Exhausted: true, Until: p.time(e.until), Remaining: e.b.tokens(now, p)}
		}
		s.unban(e)
		s.active.pushFront(e)
	default:
		s.active.moveToFront(e)
	}

	ok, left := e.b.takeCost(now, p, r.cost(p.refill))
	if ok {
		return Verdict{Remaining: left}
	}
	// Banned for BanDuration, or until a whole token is back if that is
	// later, so that the first spend after the ban never bans again.
	e.until = max(now+p.ban, e.b.refilled(now, p))
	e.banned = true
	s.active.remove(e)
	s.banned.insertByUntil(e)
	s.nbanned.Add(1)
	s.exhaustions.Add(1)
	return Verdict{Exhausted: true, NewlyExhausted: true, Until: p.time(e.until), Remaining: left}
}

// isBanned reports whether k is refused now. It never allocates, never
// creates an entry and, when the shard has no ban, takes no lock.
func (t *table[K]) isBanned(h uint64, k K) bool {
	s := t.shard(h)
	if s.nbanned.Load() == 0 {
		return false
	}
	s.mu.RLock()
	var banned bool
	var until int64
	if e := s.entries[k]; e != nil {
		banned, until = e.banned, e.until
	}
	s.mu.RUnlock()
	return banned && t.p.tick() < until
}

// forgive drops every trace of k.
func (t *table[K]) forgive(h uint64, k K) {
	s := t.shard(h)
	s.mu.Lock()
	if e := s.entries[k]; e != nil {
		s.remove(e)
	}
	s.mu.Unlock()
}

// stats adds the table's counters into ts.
func (t *table[K]) stats(ts *TableStats) {
	for i := range t.shards {
		s := &t.shards[i]
		for r := range s.spent {
			ts.Spent[r] += s.spent[r].Load()
		}
		ts.Exhaustions += s.exhaustions.Load()
		ts.Evictions += s.evictions.Load()
		ts.EvictedBanned += s.evictedBanned.Load()
		ts.Keys += int(s.keys.Load())
	}
}

// insert tracks k with a full bucket, making room first if the shard is at
// capacity. s.mu must be held.
func (s *shard[K]) insert(k K, now int64) *entry[K] {
	s.reap(now)
	if len(s.entries) >= s.capacity {
		s.evict(now)
	}
	e := &entry[K]{key: k}
	e.b.fill(now, s.p)
	s.entries[k] = e
	s.active.pushFront(e)
	s.keys.Add(1)
	return e
}

// reap drops, or returns to the active list, entries that no longer need
// tracking: a lapsed ban, and a key whose bucket has filled up again (such a
// key behaves exactly as an untracked one). It looks at the two places
// where such entries collect, the ban ending first and the least recently
// charged keys, so each insert does a bounded amount of clean-up; memory
// then shrinks back as new keys arrive, with no background goroutine.
// s.mu must be held.
func (s *shard[K]) reap(now int64) {
	if e := s.banned.front; e != nil && now >= e.until {
		s.unban(e)
		if e.b.full(now, s.p) {
			s.drop(e)
		} else {
			// Idle since the ban: it belongs at the old end.
			s.active.pushBack(e)
		}
	}
	// Two per insert, so that a table shrinks while new keys keep coming.
	for range 2 {
		e := s.active.back
		if e == nil || !e.b.full(now, s.p) {
			return
		}
		s.remove(e)
	}
}

// evict makes room for one entry: the least recently charged key that is not
// banned, or, when every tracked key is banned, the ban ending first (had it
// lapsed, reap would have taken it already). Dropping a ban early is the
// lesser evil: refusing to track a new key would leave it unpunishable, and
// an attacker able to fill a shard with bans already holds more addresses
// than the table could ever refuse. s.mu must be held.
func (s *shard[K]) evict(now int64) {
	e := s.active.back
	if e == nil {
		e = s.banned.front
		if now < e.until {
			s.evictedBanned.Add(1)
		}
	}
	s.remove(e)
	s.evictions.Add(1)
}

// unban takes e off the banned list and clears its ban; the caller puts it
// on the active list or drops it. s.mu must be held.
func (s *shard[K]) unban(e *entry[K]) {
	s.banned.remove(e)
	s.nbanned.Add(-1)
	e.banned, e.until = false, 0
}

// remove unlinks e from whichever list holds it and forgets it.
// s.mu must be held.
func (s *shard[K]) remove(e *entry[K]) {
	if e.banned {
		s.banned.remove(e)
		s.nbanned.Add(-1)
	} else {
		s.active.remove(e)
	}
	s.drop(e)
}

// drop forgets e, which must already be off both lists. s.mu must be held.
func (s *shard[K]) drop(e *entry[K]) {
	delete(s.entries, e.key)
	s.keys.Add(-1)
}
