package store

import (
	"errors"
	"fmt"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Group commit. One committer goroutine per Store takes every batch queued
// so far and writes them in one bbolt transaction: one commit, one round of
// fsyncs, however many callers are waiting. Batches that arrive while a
// commit is running wait for the next one. There is no timer: a lone writer
// is committed at once instead of waiting for company (which is what bbolt's
// own DB.Batch does, adding its MaxBatchDelay to every exchange).

// pending is a queued batch and its callback.
type pending struct {
	b    Batch // a copy: the ops already recorded cannot change under us
	done func(error)
}

// maxSpare bounds the queue buffer the committer keeps between groups, so
// that one burst does not pin a large slice for the life of the store.
const maxSpare = 1024

// Commit applies b durably (fsync'ed) before returning. Concurrent Commit and
// CommitAsync calls share one transaction and one fsync. A nil or empty b
// returns once every batch queued before it is durable.
func (s *Store) Commit(b *Batch) error {
	ch := make(chan error, 1)
	s.CommitAsync(b, func(err error) { ch <- err })
	return <-ch
}

// CommitAsync queues b and calls done (if non-nil) once b is durable or has
// failed. done runs on the store's committer goroutine, in the order batches
// were queued; it must not block, nor call Commit or Close. If the store is
// closed, done is called at once, on the caller's goroutine, with ErrClosed.
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
	s.cond.Signal()
	s.mu.Unlock()
}

// run is the committer. It exits once Close has been called and the queue
// is empty, so every batch queued before Close is committed.
func (s *Store) run() {
	defer close(s.stopped)
	// A fault reading the memory map (a file damaged under us) becomes a
	// panic that update turns into ErrCorrupt, not a crash of the process.
	debug.SetPanicOnFault(true)
	var spare []pending
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.closing {
			s.cond.Wait()
		}
		group := s.queue
		s.queue = spare[:0]
		s.mu.Unlock()
		if len(group) == 0 {
			return
		}
		s.commitGroup(group)
		clear(group) // drop payloads and callbacks now, not at the next group
		spare = nil
		if cap(group) <= maxSpare {
			spare = group
		}
	}
}

// commitGroup writes group and then reports to each batch, in order.
func (s *Store) commitGroup(group []pending) {
	errs := make([]error, len(group))
	for i := range group {
		errs[i] = group[i].b.err
	}
	s.write(group, errs)
	for i := range group {
		if done := group[i].done; done != nil {
			done(errs[i])
		}
	}
}

var (
	// errRetry rolls back a transaction in which one batch failed, so that
	// it can be run again without that batch.
	errRetry = errors.New("retry without the failed batch")
	// errNothing rolls back a transaction that wrote nothing, saving its
	// fsyncs.
	errNothing = errors.New("nothing to write")
)

// write applies the batches of group not already failed in errs, normally in
// one transaction, and records each batch's outcome in errs. One batch must
// not fail its neighbours: a full store fails only the batches that add data,
// and a batch whose writes bbolt refuses (which validation should prevent)
// is dropped and the transaction run again without it.
func (s *Store) write(group []pending, errs []error) {
	for {
		applied := 0
		err := s.update(func(tx *bolt.Tx) error {
			applied = 0
			used := s.used(tx)
			for i := range group {
				b := &group[i].b
				if errs[i] != nil || len(b.ops) == 0 {
					continue
				}
				if b.adds && used >= s.maxBytes {
					errs[i] = s.fullError(used)
					continue
				}
				if err := applyOps(tx, b.ops); err != nil {
					errs[i] = fmt.Errorf("store: write to %s: %w", s.path, err)
					return errRetry
				}
				used += b.size
				applied++
			}
			if applied == 0 {
				return errNothing
			}
			return nil
		})
		switch {
		case errors.Is(err, errRetry):
			continue
		case errors.Is(err, errNothing):
			return
		case err != nil:
			if !errors.Is(err, ErrCorrupt) {
				err = fmt.Errorf("store: commit to %s: %w", s.path, err)
			}
			s.log.Error("commit failed", zap.Int("batches", applied), zap.Error(err))
			for i := range errs {
				if errs[i] == nil {
					errs[i] = err
				}
			}
			return
		}
		s.commits.Add(1)
		s.batches.Add(uint64(applied))
		return
	}
}

// update runs fn in a write transaction, turning bbolt's panics on a damaged
// file into ErrCorrupt (bbolt rolls the transaction back as the panic passes).
func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = corruptError(s.path, "", fmt.Errorf("writing panicked: %v", r))
		}
	}()
	return s.db.Update(fn)
}

// used estimates the bytes of the file in use: its high-water mark less the
// free pages (including those freed by the previous commit, which bbolt
// reuses once no reader needs them). The committer is the only writer, so
// bbolt's statistics describe the state this transaction started from.
func (s *Store) used(tx *bolt.Tx) int64 {
	st := s.db.Stats()
	return tx.Size() - int64(st.FreePageN+st.PendingPageN)*s.pageSize
}

func (s *Store) fullError(used int64) error {
	return &fileError{kind: ErrFull, path: s.path, phrase: "is full",
		detail: fmt.Sprintf("%d bytes in use, limit %d", used, s.maxBytes)}
}

func applyOps(tx *bolt.Tx, ops []op) error {
	for _, o := range ops {
		bk := tx.Bucket(o.bucket.name())
		if bk == nil {
			return fmt.Errorf("no %q bucket", o.bucket)
		}
		switch o.kind {
		case opAdd:
			if bk.Get(o.key) != nil {
				continue
			}
			fallthrough
		case opPut:
			if err := bk.Put(o.key, o.value); err != nil {
				return fmt.Errorf("put %s %x: %w", o.bucket, o.key, err)
			}
		case opDelete:
			if err := bk.Delete(o.key); err != nil {
				return fmt.Errorf("delete %s %x: %w", o.bucket, o.key, err)
			}
		default:
			return fmt.Errorf("unknown op %d", o.kind)
		}
	}
	return nil
}
