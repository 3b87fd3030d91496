package store

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// Group commit. One committer goroutine per Store takes every batch queued
// so far and writes them as one pebble batch applied with pebble.Sync: one
// write-ahead log append and one fsync, however many callers are waiting.
// Batches that arrive while a commit is running wait for the next one. A
// lone writer is committed at once; under concurrency the committer may
// wait up to one commit's duration for the next group to fill (pace.go).

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

// stager builds the pebble batch of (part of) a group. present tracks the
// incoming keys earlier batches of the group wrote (true) or deleted
// (false), which AddIncoming must see as well as the committed state; it
// reads that state through one iterator per pebble batch, since nothing
// else writes to the store while the committer stages. sizes, once a full
// store needs it (grows), tracks the size of every key the group wrote so
// far, 0 for a deleted one, and values their values.
type stager struct {
	s       *Store
	b       *pebble.Batch
	it      *pebble.Iterator
	present map[string]bool
	sizes   map[string]int64
	values  map[string][]byte // with sizes: the values the group wrote so far
}

func (st *stager) len() int {
	if st.b == nil {
		return 0
	}
	return st.b.Len()
}

// stage adds ops to the pebble batch. On error the pebble batch holds part
// of ops, and the caller must discard it.
func (st *stager) stage(ops []op) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pebble refused the batch: %v", r)
		}
	}()
	if st.b == nil {
		st.b = st.s.db.NewBatch()
	}
	for _, o := range ops {
		if o.kind < opPut || o.kind > opDelete {
			return fmt.Errorf("unknown op %d", o.kind)
		}
		k := append(append(st.s.scratch[:0], o.table.prefix()), o.key...)
		st.s.scratch = k
		switch o.kind {
		case opAdd:
			exists, err := st.exists(k)
			if err != nil {
				return fmt.Errorf("look up %s %x: %w", o.table, o.key, err)
			}
			if exists {
				continue
			}
			fallthrough
		case opPut:
			if err := st.b.Set(k, o.value, nil); err != nil {
				return fmt.Errorf("put %s %x: %w", o.table, o.key, err)
			}
			st.mark(o.table, k, true)
		case opDelete:
			if err := st.b.Delete(k, nil); err != nil {
				return fmt.Errorf("delete %s %x: %w", o.table, o.key, err)
			}
			st.mark(o.table, k, false)
		}
	}
	if st.sizes != nil {
		return st.track(ops)
	}
	return nil
}

// replaceSlack is how much a batch that changes or deletes a record may
// add, in bytes, and still count as not growing the store: the mark that
// replaces a record may carry a flag or a time the record did not (a
// handled request that was answered, with its reply dropped), and a
// failed exchange moves from the outbox to the dead letters with its
// reason and error.
const replaceSlack = 256

// grows reports whether batch i of group, about to be staged after the
// batches written and those of part, adds to the records of the store: it
// puts more, in bytes, than it deletes or replaces (by more than
// replaceSlack, if it deletes or changes any record: one it leaves as it
// was, an AddIncoming of a record already there or a put of the same
// value, earns no slack). A full store takes the
// batches that do not, so that marking a message handled, moving a record
// between the outbox and the dead letters or updating one in place never
// fails for want of room: that is how room comes back. A resend's
// AddIncoming of a record already there adds nothing.
func (st *stager) grows(group []pending, written []bool, part []int, i int) (_ bool, err error) {
	defer recoverPebble(st.s.path, &err)
	if st.sizes == nil {
		// From now on stage tracks every batch; the ones before come
		// first, in their order.
		st.sizes = make(map[string]int64)
		st.values = make(map[string][]byte)
		inPart := make(map[int]bool, len(part))
		for _, j := range part {
			inPart[j] = true
		}
		for j := range i {
			if written[j] || inPart[j] {
				if err := st.track(group[j].b.ops); err != nil {
					return false, err
				}
			}
		}
	}
	type change struct {
		before, after int64
		put           []byte // the value the batch leaves, if it puts one
	}
	changes := make(map[string]*change)
	for _, o := range group[i].b.ops {
		k := tableKey(o)
		c := changes[k]
		if c == nil {
			n, err := st.size(k)
			if err != nil {
				return false, err
			}
			c = &change{before: n, after: n}
			changes[k] = c
		}
		switch {
		case o.kind == opDelete:
			c.after, c.put = 0, nil
		case o.kind == opPut || c.after == 0:
			c.after, c.put = int64(len(k)+len(o.value)+elemOverhead), o.value
		}
	}
	var growth int64
	replaces := false
	for k, c := range changes {
		growth += c.after - c.before
		if replaces || c.before == 0 {
			continue
		}
		// A record left as it was (an AddIncoming of one already there,
		// a put of what is there) replaces nothing.
		replaces = c.after != c.before
		if !replaces && c.put != nil {
			v, err := st.value(k)
			if err != nil {
				return false, err
			}
			replaces = !bytes.Equal(v, c.put)
		}
	}
	if replaces {
		growth -= replaceSlack
	}
	return growth > 0, nil
}

// tableKey is o's key in the store, as the key of stager.sizes.
func tableKey(o op) string { return string(o.table.prefix()) + string(o.key) }

// track records in st.sizes what ops, staged, do to the size of their keys.
func (st *stager) track(ops []op) error {
	for _, o := range ops {
		k := tableKey(o)
		switch o.kind {
		case opDelete:
			st.sizes[k] = 0
			st.values[k] = nil
		case opAdd:
			n, err := st.size(k)
			if err != nil {
				return err
			}
			if n > 0 {
				continue
			}
			fallthrough
		default:
			st.sizes[k] = int64(len(k) + len(o.value) + elemOverhead)
			st.values[k] = o.value
		}
	}
	return nil
}

// size is the size of the record under k, as the group has left it so
// far: 0 when there is none.
func (st *stager) size(k string) (int64, error) {
	if n, ok := st.sizes[k]; ok {
		return n, nil
	}
	it, err := st.iter()
	if err != nil {
		return 0, err
	}
	if !it.SeekPrefixGE([]byte(k)) {
		if err := it.Error(); err != nil {
			return 0, pebbleError(st.s.path, "read", err)
		}
		return 0, nil
	}
	v := it.LazyValue()
	return int64(len(k) + v.Len() + elemOverhead), nil
}

// value is the record under k, as the group has left it so far: nil when
// there is none. Only grows calls it, for a record it replaces.
func (st *stager) value(k string) ([]byte, error) {
	if _, ok := st.sizes[k]; ok {
		return st.values[k], nil
	}
	it, err := st.iter()
	if err != nil {
		return nil, err
	}
	if !it.SeekPrefixGE([]byte(k)) {
		if err := it.Error(); err != nil {
			return nil, pebbleError(st.s.path, "read", err)
		}
		return nil, nil
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, pebbleError(st.s.path, "read", err)
	}
	return v, nil
}

func (st *stager) mark(t tableID, k []byte, present bool) {
	if t != tableIncoming {
		return // only incoming records are added conditionally
	}
	if st.present == nil {
		st.present = make(map[string]bool)
	}
	st.present[string(k)] = present
}

// exists tells whether k is in the group so far or else in the store.
func (st *stager) exists(k []byte) (bool, error) {
	if p, ok := st.present[string(k)]; ok {
		return p, nil
	}
	it, err := st.iter()
	if err != nil {
		return false, err
	}
	found := it.SeekPrefixGE(k)
	if err := it.Error(); err != nil {
		return false, pebbleError(st.s.path, "read", err)
	}
	return found, nil
}

// iter is the stager's view of the committed state.
func (st *stager) iter() (*pebble.Iterator, error) {
	if st.it == nil {
		// Not db.Get: it skips the bloom filters of the last level, where
		// a small store keeps nearly everything, and so reads its blocks
		// for a key that is nearly always absent.
		it, err := st.s.db.NewIter(&pebble.IterOptions{UseL6Filters: true})
		if err != nil {
			return nil, pebbleError(st.s.path, "read", err)
		}
		st.it = it
	}
	return st.it, nil
}

// closeIter ends the stager's view of the committed state: a commit changes
// it.
func (st *stager) closeIter() error {
	if st.it == nil {
		return nil
	}
	err := st.it.Close()
	st.it = nil
	return err
}

// commit applies the pebble batch durably and starts afresh.
func (st *stager) commit() (err error) {
	defer recoverPebble(st.s.path, &err)
	if err := st.closeIter(); err != nil {
		return pebbleError(st.s.path, "read", err)
	}
	b := st.b
	st.b = nil
	if err := b.Commit(pebble.Sync); err != nil {
		return pebbleError(st.s.path, "commit", err)
	}
	if err := b.Close(); err != nil {
		return pebbleError(st.s.path, "commit", err)
	}
	return nil
}

// close discards what is staged and not committed.
func (st *stager) close() {
	_ = st.closeIter()
	if st.b != nil {
		_ = st.b.Close()
		st.b = nil
	}
}

// drop discards a pebble batch that staging failed in (pebble may have
// panicked half way through it): left to the garbage collector rather than
// returned to pebble's pool.
func (st *stager) drop() {
	_ = st.closeIter()
	st.b = nil
}
