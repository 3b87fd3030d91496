package store

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Group commit. One committer goroutine per Store takes every batch queued
// so far and writes them as one pebble batch applied with pebble.Sync: one
// write-ahead log append and one fsync, however many callers are waiting.
// Batches that arrive while a commit is running wait for the next one. A
// lone writer is committed at once; under concurrency the committer may
// wait up to one commit's duration for the next group to fill (pace.go).
// The stager (stager.go) builds the pebble batch.

// pending is a queued batch and its callback.
type pending struct {
	b    Batch // a copy: the ops already recorded cannot change under us
	done func(error)
	// reclaim, once the batch is parked (reclaim.go), is closed when the
	// reclaim it waits for has ended.
	reclaim <-chan struct{}
}

// errParked marks, in write's outcomes, a batch parked for a reclaim: it
// is neither committed nor refused yet, and its callback waits.
var errParked = errors.New("parked")

// maxSpare bounds the queue buffer the committer keeps between groups, so
// that one burst does not pin a large slice for the life of the store.
const maxSpare = 1024

// maxCommitBytes bounds one pebble batch, well below pebble's limit of 4 GiB
// per batch: a group whose batches add up to more is committed in parts
// (each batch whole in one part), before any callback runs. A variable for
// tests.
var maxCommitBytes int64 = 256 << 20

// Commit applies b durably (fsync'ed) before returning. Concurrent Commit and
// CommitAsync calls share one pebble batch and one fsync. A nil or empty b
// returns once every batch queued before it is durable or has failed.
func (s *Store) Commit(b *Batch) error {
	ch := make(chan error, 1)
	s.CommitAsync(b, func(err error) { ch <- err })
	return <-ch
}

// CommitAsync queues b and calls done (if non-nil) once b is durable or has
// failed. done runs on the store's committer goroutine, in the order batches
// were queued, with one exception: a batch that a full store would refuse
// (ErrFull) may wait, up to a second after the compaction it waits for begins (near
// two when one was already running), for the store to reclaim deleted and
// overwritten records, and the batches queued after it that do not write
// the same records go on meanwhile, so their done may run before its.
// Batches that write the same record are applied, and reported, in queue
// order; an empty batch is reported after every batch queued before it. done
// must not block, nor call Commit or Close. If the store is closed, done is
// called at once, on the caller's goroutine, with ErrClosed.
func (s *Store) CommitAsync(b *Batch, done func(error)) {
	p := pending{done: done}
	if b != nil {
		p.b = *b
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		if done != nil {
			done(closedError(s.path))
		}
		return
	}
	s.queue = append(s.queue, p)
	if len(s.queue) >= s.want {
		s.wakeCommitter()
	}
	s.mu.Unlock()
}

// wakeCommitter tells the committer to look at the queue again, without
// blocking: a token already waiting says the same.
func (s *Store) wakeCommitter() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run is the committer. It exits once Close has been called and the queue
// is empty, so every batch queued before Close is committed (or refused:
// at Close nothing parks for a reclaim).
func (s *Store) run() {
	defer close(s.stopped)
	var spare []pending
	pace := pacer{lingerFor: s.lingerFor}
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	deadline := time.NewTimer(time.Hour)
	deadline.Stop()
	for {
		group, closing := s.next(&pace, linger, deadline, spare)
		if len(s.parked) > 0 {
			// Tried again first: they were queued before.
			group = append(s.parked[:len(s.parked):len(s.parked)], group...)
			s.parked = nil
		}
		if len(group) == 0 {
			return
		}
		start := time.Now()
		s.commitGroup(group, closing)
		pace.committed(len(group), time.Since(start))
		clear(group) // drop payloads and callbacks now, not at the next group
		spare = nil
		if cap(group) <= maxSpare {
			spare = group
		}
	}
}

// next waits for the next group and takes it from the queue, leaving spare
// as the queue's buffer; it returns an empty group once the store closes
// with nothing queued, or, with batches parked, once a reclaim has ended
// or they may park no longer. It reports whether the store is closing.
func (s *Store) next(pace *pacer, linger, deadline *time.Timer, spare []pending) ([]pending, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.parked) > 0 {
		deadline.Reset(time.Until(s.reclaimBy))
		defer deadline.Stop()
	}
	for len(s.queue) == 0 && !s.closing {
		if len(s.parked) == 0 {
			s.await(nil)
			continue
		}
		if !s.await(deadline.C) || s.reclaimEnds.Load() != s.endsSeen {
			break
		}
	}
	if len(s.queue) > 0 && pace.waits(len(s.queue)) && !s.closing {
		s.want = pace.want
		linger.Reset(pace.linger)
		for len(s.queue) < pace.want && !s.closing {
			if !s.await(linger.C) {
				break
			}
		}
		linger.Stop()
	}
	s.want = 1
	group := s.queue
	s.queue = spare[:0]
	return group, s.closing
}

// await releases mu until the committer is woken, or until timeout fires
// (then it reports false). The caller holds mu.
func (s *Store) await(timeout <-chan time.Time) bool {
	s.mu.Unlock()
	defer s.mu.Lock()
	select {
	case <-s.wake:
		return true
	case <-timeout:
		return false
	}
}

// commitGroup writes group and then reports to each batch, in order, but
// for those it parks (until the next group).
func (s *Store) commitGroup(group []pending, closing bool) {
	errs := make([]error, len(group))
	for i := range group {
		errs[i] = group[i].b.err
	}
	s.write(group, errs, closing)
	for i := range group {
		if errs[i] == errParked {
			s.parked = append(s.parked, group[i])
			continue
		}
		if done := group[i].done; done != nil {
			done(errs[i])
		}
	}
}

// write applies the batches of group not already failed in errs, normally as
// one pebble batch, and records each batch's outcome in errs (errParked for
// one parked for a reclaim, unless closing). One batch must not fail its
// neighbours: a full store fails (or parks) only the batches that add data,
// and a batch that cannot be staged (which validation should prevent) is
// dropped and the group staged again without it.
func (s *Store) write(group []pending, errs []error, closing bool) {
	written := make([]bool, len(group)) // committed
	// failAll fails every batch not failed or committed already: a batch
	// of a part committed before the failure is durable, and its callback
	// must say so.
	failAll := func(err error) {
		for i := range errs {
			if (errs[i] == nil || errs[i] == errParked) && !written[i] {
				errs[i] = err
			}
		}
	}
	if err := s.Err(); err != nil {
		failAll(err)
		return
	}
	if s.readOnly {
		for i := range group {
			if errs[i] == nil && len(group[i].b.ops) > 0 {
				errs[i] = readOnlyError(s.path)
			}
		}
		return
	}
	measure := s.inUse
	if s.reclaimEnded() {
		measure = s.measure // the room it freed
	}
	used, err := measure()
	if err != nil {
		s.log.Error("commit failed", zap.Error(err))
		failAll(err)
		return
	}
	full := used >= s.maxBytes
	now := time.Now()
	for {
		st := stager{s: s}
		u := used
		var part []int // batches in the current pebble batch
		var partSize int64
		retry := false
		nParked := 0
		var parkedKeys map[string][]int // the keys parked batches write, to the batches
		for i := range group {
			b := &group[i].b
			if errs[i] == errParked {
				errs[i] = nil // decided again
			}
			if errs[i] != nil || written[i] {
				continue
			}
			if len(b.ops) == 0 {
				if nParked > 0 {
					errs[i] = errParked // after them
				}
				continue
			}
			grows := false
			if b.adds && u >= s.maxBytes {
				grows, err = st.grows(group, written, part, i)
				if err != nil {
					errs[i] = err
					continue
				}
			}
			if grows {
				if closing {
					errs[i] = s.fullError(u)
					continue
				}
				wait := s.parkFor(now, nParked, group[i].reclaim)
				if wait == nil {
					errs[i] = s.fullError(u)
					continue
				}
				errs[i], group[i].reclaim = errParked, wait
				nParked++
				if parkedKeys == nil {
					parkedKeys = make(map[string][]int)
				}
				for _, o := range b.ops {
					k := tableKey(o)
					parkedKeys[k] = append(parkedKeys[k], i)
				}
				continue
			}
			// It goes through: a parked batch that writes a record it
			// writes is refused first, rather than applied after it.
			for _, o := range b.ops {
				if len(parkedKeys) == 0 {
					break
				}
				for _, j := range parkedKeys[tableKey(o)] {
					if errs[j] == errParked {
						errs[j] = s.fullError(u)
						nParked--
					}
				}
			}
			if len(part) > 0 && int64(st.len())+b.size > maxCommitBytes {
				if err := s.commitPart(&st, part, written); err != nil {
					failAll(err)
					return
				}
				s.added(partSize)
				part, partSize = part[:0], 0
				used = u // a retry starts from what is committed
			}
			if err := st.stage(b.ops); err != nil {
				errs[i] = fmt.Errorf("store: write to %s: %w", s.path, err)
				retry = true
				break
			}
			part = append(part, i)
			partSize += b.size
			u += b.size
		}
		if retry {
			st.drop()
			continue
		}
		// An empty batch waits only behind a batch still parked.
		behind := false
		for i := range group {
			if errs[i] != errParked {
				continue
			}
			if len(group[i].b.ops) > 0 {
				behind = true
			} else if !behind {
				errs[i] = nil
			}
		}
		if len(part) > 0 {
			if err := s.commitPart(&st, part, written); err != nil {
				failAll(err)
				return
			}
			s.added(partSize)
		}
		st.close()
		break
	}
	for i := range group {
		if written[i] && len(group[i].b.ops) > 0 {
			s.reclaimDue = true
		}
	}
	if full && s.reclaimDue {
		s.reclaimDue = false
		s.askReclaim()
	}
}

// commitPart applies the staged pebble batch with pebble.Sync and marks its
// batches written; the stager starts a new pebble batch. A pebble batch left
// empty (every write an AddIncoming of a record already there) needs no
// commit: what its batches promise is durable already.
func (s *Store) commitPart(st *stager, part []int, written []bool) error {
	if st.b == nil || st.b.Empty() {
		st.close()
		for _, i := range part {
			written[i] = true
		}
		s.batches.Add(uint64(len(part)))
		return nil
	}
	if err := st.commit(); err != nil { // it names the store already
		s.log.Error("commit failed", zap.Int("batches", len(part)), zap.Error(err))
		return err
	}
	for _, i := range part {
		written[i] = true
	}
	s.commits.Add(1)
	s.batches.Add(uint64(len(part)))
	return nil
}
