package store

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Reclaiming. Deleted records free disk space only once a compaction drops
// them with their tombstones; pebble compacts on its own as writes go on,
// but a full store takes no writes but deletes, which alone may never fill
// a memtable. So the committer wakes the reclaimer when the store is full
// and records were deleted since the last reclaim (or, for a store that was
// not new at Open, once): it flushes the memtable and compacts every key.
// Reclaims are spaced by four times the previous one's duration, so that a
// store full of live records spends at most a fifth of its disk time on
// them.

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
			s.log.Info("store compacted to reclaim deleted records", zap.Duration("took", took))
		case ctx.Err() == nil:
			s.log.Error("reclaim failed", zap.Error(err))
		}
	}
}

func (s *Store) reclaim(ctx context.Context) (err error) {
	defer recoverPebble(s.path, &err)
	return s.db.Compact(ctx, []byte{0}, []byte{0xff}, false)
}
