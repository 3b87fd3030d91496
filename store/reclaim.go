package store

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Reclaiming. Deleted and overwritten records free disk space only once a
// compaction drops them (with the tombstones), and the records of the
// memtable count (in the write-ahead log) until a flush writes the latest
// of them to an sstable; pebble flushes and compacts on its own as writes
// go on, but a full store takes no writes but deletes, which alone may
// never fill a memtable. A node whose received messages were all handled
// (each handled record overwrites the received one) stayed full, refusing
// everything, until it restarted. So the committer wakes the reclaimer when
// a group finds the store full and records were written or deleted since
// the last reclaim (or, for a store that was not new at Open, once): it
// flushes the memtable and compacts every key. A reclaim that freed less
// than a 32nd of the cap delays the next by four times its duration, so
// that a store full of live records spends at most a fifth of its disk
// time on them; one that freed more does not, since another may be as
// useful.
//
// The reclaim is asynchronous, and the committer never waits for it. A
// batch that a full store would refuse is set aside (parked: see
// pending.reclaim) and tried again, first in the next group, once the
// reclaim asked for it has ended or the deadline has passed; it is refused
// only if the store is still full then. Deleted records made a store
// capped at 16 MiB refuse 35 to 168 of a sequence of 200 records of 1 MiB,
// each deleted three puts later, with never more than 3 MiB live (the
// faster they came, the more). The deadline (reclaimBy) is reclaimWait
// after the first batch parked since a reclaim last ended. Meanwhile the
// batches that do not grow the records go through: the committer used to
// wait in the group, and every writer queued behind it with it, up to a
// second for each group with a growing batch, while reclaiming a large
// store full of live records took seconds. Records stay in order: a batch
// that writes a record a parked batch writes goes through only once that
// one is refused (one that grows the records parks behind it instead), and
// an empty batch parks behind any. Nothing parks when the last reclaim
// freed less than a 32nd of the cap (the store holds live records, and the
// spacing puts the next reclaim off), past maxParked batches, or once
// Close was called. Not full, the committer does none of this.

// reclaimWait bounds how long batches park for a reclaim to make room: in
// all, from the first batch parked, until a reclaim ends, so that a long
// reclaim (a large store full of live records), or one put off by the
// spacing, has the growing batches refused after a second, not each a
// second after it came. Reclaiming a store capped at 16 MiB took 90 to
// 400 ms, measured on an idle machine, and 0.3 to 2 s on one loaded eight
// times over.
const reclaimWait = time.Second

// maxParked bounds the batches parked for a reclaim; past it a growing
// batch is refused at once, so that memory stays bounded.
const maxParked = 256

// obsoleteWait bounds how long a reclaim waits for pebble to delete the
// files the compaction left obsolete, which it does in the background.
const obsoleteWait = 2 * time.Second

// askReclaim asks the reclaimer for a reclaim that starts from now, without
// waiting; a batch may park until it ends. Only the committer (or Open,
// before it starts) calls it.
func (s *Store) askReclaim() {
	s.reclaimMu.Lock()
	if s.reclaimNext == nil {
		s.reclaimNext = make(chan struct{})
	}
	s.reclaimAsked = s.reclaimNext
	s.reclaimMu.Unlock()
	s.kickReclaim()
}

// reclaimEnded tells the committer whether a reclaim ended since it last
// looked, and forgets the reclaim asked last once it has ended. The
// deadline for parked batches (reclaimBy) starts afresh then, and only
// then. Only the committer calls it.
func (s *Store) reclaimEnded() bool {
	if s.reclaimAsked != nil {
		select {
		case <-s.reclaimAsked:
			s.reclaimAsked = nil
		default:
		}
	}
	// After reclaimAsked: the reclaimer counts an end before it closes
	// the channel, so one seen closed is counted.
	n := s.reclaimEnds.Load()
	if n == s.endsSeen {
		return false
	}
	s.endsSeen = n
	s.reclaimBy = time.Time{}
	return true
}

// parkFor is for a growing batch that a full store would refuse: it
// returns the end of the reclaim the batch may park for, or nil when it
// must be refused now. prev is that of the reclaim it parked for already,
// if any: once that one has ended, the store is still full, and the batch
// is refused. If anything was written since the last reclaim, it asks for
// one. Only the committer calls it; now is the group's time, and parked
// counts the batches parked so far.
func (s *Store) parkFor(now time.Time, parked int, prev <-chan struct{}) <-chan struct{} {
	wait := prev
	if wait != nil {
		select {
		case <-wait:
			return nil
		default:
		}
	} else {
		if s.reclaimDue {
			s.reclaimDue = false
			s.askReclaim()
		}
		wait = s.reclaimAsked // nil: nothing was deleted or overwritten since the last reclaim
	}
	switch {
	case wait == nil,
		s.freedLittle.Load(), // nothing to gain
		parked >= maxParked,
		!s.reclaimBy.IsZero() && !now.Before(s.reclaimBy):
		return nil
	}
	if s.reclaimBy.IsZero() {
		s.reclaimBy = now.Add(s.reclaimWait)
	}
	return wait
}

// kickReclaim wakes the reclaimer, without waiting.
func (s *Store) kickReclaim() {
	select {
	case s.reclaimKick <- struct{}{}:
	default: // one is pending already
	}
}

// reclaimer runs reclaims when kicked, until ctx is cancelled (by Close,
// once the committer has stopped).
func (s *Store) reclaimer(ctx context.Context) {
	defer close(s.reclaimDone)
	var next time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.reclaimKick:
		}
		if wait := time.Until(next); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		// The reclaim serves whoever asked for one until now.
		s.reclaimMu.Lock()
		asked := s.reclaimNext
		s.reclaimNext = nil
		s.reclaimMu.Unlock()
		if s.reclaiming != nil {
			s.reclaiming()
		}
		start := time.Now()
		before, _ := s.used()
		err := s.reclaim(ctx)
		took := time.Since(start)
		after, uerr := s.used()
		next = time.Time{}
		little := err != nil || uerr != nil || before-after < s.maxBytes/32
		if little {
			next = time.Now().Add(4 * took)
		}
		s.freedLittle.Store(little)
		s.reclaimEnds.Add(1)
		if asked != nil {
			close(asked)
		}
		s.wakeCommitter() // for the batches parked for it
		switch {
		case err == nil:
			s.log.Info("store compacted to reclaim deleted and overwritten records",
				zap.Duration("took", took), zap.Int64("freed", before-after))
		case ctx.Err() == nil:
			// One line, rate-limited: a full disk fails every reclaim.
			if ok, held := s.limit.allow("reclaim failed: " + err.Error()); ok {
				s.log.Error("reclaim failed", zap.String("error", err.Error()), zap.Int("repeated", held))
			}
		}
		if s.reclaimed != nil {
			s.reclaimed(err)
		}
	}
}

func (s *Store) reclaim(ctx context.Context) (err error) {
	defer recoverPebble(s.path, &err)
	if err := s.db.Compact(ctx, []byte{0}, []byte{0xff}, false); err != nil {
		return err
	}
	// The room is back once pebble has deleted the files the compaction
	// left obsolete, in the background and soon: a committer waiting for
	// the reclaim measures the disk next. Pebble tells of no end to wait
	// for (its count of obsolete files drops after the last deletion it
	// reports), so the count is looked at every few milliseconds.
	deadline := time.NewTimer(obsoleteWait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for s.db.Metrics().Table.ObsoleteCount > 0 {
		select {
		case <-tick.C:
		case <-deadline.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}
