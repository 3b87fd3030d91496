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
// flushes the memtable and compacts every key. Reclaims are spaced by four
// times the previous one's duration, so that a store full of live records
// spends at most a fifth of its disk time on them.

// kickReclaim asks the reclaimer for a reclaim, without waiting.
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
		start := time.Now()
		err := s.reclaim(ctx)
		took := time.Since(start)
		next = time.Now().Add(4 * took)
		switch {
		case err == nil:
			s.log.Info("store compacted to reclaim deleted and overwritten records", zap.Duration("took", took))
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
	return s.db.Compact(ctx, []byte{0}, []byte{0xff}, false)
}
