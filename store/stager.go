package store

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Staging a group. The committer writes a group's batches into one pebble
// batch, but each batch must be judged against the store as the batches
// before it in the group leave it, not only as it was last committed: an
// AddIncoming of a record an earlier batch of the group wrote or deleted,
// and, on a full store, whether a batch adds to the records or only
// replaces and deletes them. The stager keeps that view while it builds the
// pebble batch.

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
