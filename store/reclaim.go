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
// The reclaim is asynchronous, but a batch that a full store would refuse
// waits for it (awaitReclaim), up to reclaimWait, and is refused only if
// the store is still full once it has ended: deleted records made a store
// capped at 16 MiB refuse 35 to 168 of a sequence of 200 records of 1 MiB,
// each deleted three puts later, with never more than 3 MiB live (the
// faster they came, the more). Not full, the committer does none of this.

// reclaimWait bounds how long the committer waits for a reclaim to make
// room for a batch it would otherwise refuse: in all, from the first wait
// for it, so that a long reclaim (a large store full of live records), or
// one put off by the spacing, holds up one group, not each of them. Reclaiming a store capped at 16 MiB took 90 to 400 ms, measured on
// an idle machine, and 0.3 to 2 s on one loaded eight times over.
const reclaimWait = time.Second

// obsoleteWait bounds how long a reclaim waits for pebble to delete the
// files the compaction left obsolete, which it does in the background.
const obsoleteWait = 2 * time.Second

// askReclaim asks the reclaimer for a reclaim that starts from now, without
// waiting; the committer may wait for its end (awaitReclaim). Only the
// committer (or Open, before it starts) calls it.
func (s *Store) askReclaim() {
	s.reclaimMu.Lock()
	if s.reclaimNext == nil {
		s.reclaimNext = make(chan struct{})
	}
	s.reclaimAsked = s.reclaimNext
	s.reclaimMu.Unlock()
	s.reclaimBy = time.Time{}
	s.kickReclaim()
}

// awaitReclaim is for a batch that a full store would refuse: records
// deleted or overwritten since the last reclaim may be taking the room it
// needs. If anything was written since, it asks for a reclaim; it then
// waits for the reclaim asked last to end, until reclaimWait after the
// first wait for it. It reports whether one ended, so that the disk in use is worth
// measuring again. Only the committer calls it; st is the group's stager,
// whose view of the store would keep the files a reclaim replaces.
func (s *Store) awaitReclaim(st *stager) bool {
	if s.reclaimDue {
		s.reclaimDue = false
		s.askReclaim()
	}
	if s.reclaimAsked == nil {
		return false
	}
	_ = st.closeIter() // a read error shows again on its next use
	if s.reclaimBy.IsZero() {
		s.reclaimBy = time.Now().Add(s.reclaimWait)
	}
	wait := time.Until(s.reclaimBy)
	if wait <= 0 {
		select {
		case <-s.reclaimAsked:
			s.reclaimAsked = nil
			return true
		default:
			return false
		}
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-s.reclaimAsked:
		s.reclaimAsked = nil
		return true
	case <-t.C:
		return false
	}
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
		start := time.Now()
		before, _ := s.used()
		err := s.reclaim(ctx)
		took := time.Since(start)
		after, uerr := s.used()
		if asked != nil {
			close(asked)
		}
		next = time.Time{}
		if err != nil || uerr != nil || before-after < s.maxBytes/32 {
			next = time.Now().Add(4 * took)
		}
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
