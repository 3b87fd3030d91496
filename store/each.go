package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// A walk (EachOutgoing, EachDeadLetter) reads its table in pages of at
// most pageRecords records and pageBytes bytes of values (at least one
// record): what it holds at once is bounded whatever the table holds, and
// the store is read-locked for one page at a time, not while the caller
// works on the records.
const (
	pageRecords = 64
	pageBytes   = 4 << 20
)

// EachOutgoing calls fn with each exchange of the outbox, by ID, until fn
// returns an error (which EachOutgoing returns) or ctx ends (ctx's error).
// It reads the outbox a page at a time and calls fn between reads: it holds
// a bounded number of records however large the outbox, and fn may take
// its time without holding up the store. The walk is not one snapshot:
// records committed meanwhile may or may not be seen, none is seen twice.
// A record that does not decode fails the walk with ErrCorrupt.
func (s *Store) EachOutgoing(ctx context.Context, fn func(Outgoing) error) error {
	return eachRecord(ctx, s, tableOutgoing, outgoingKV, fn)
}

// EachDeadLetter calls fn with each dead letter, by ID, as EachOutgoing
// does with the outbox.
func (s *Store) EachDeadLetter(ctx context.Context, fn func(DeadLetter) error) error {
	return eachRecord(ctx, s, tableDeadLetters, deadLetterKV, fn)
}

// Outgoing returns the outbox record of exchange id; ok is false when
// there is none (it ended and was deleted, say).
func (s *Store) Outgoing(id uint64) (o Outgoing, ok bool, err error) {
	err = s.view(false, func(r pebble.Reader) error {
		k := idKey(id)
		v, closer, err := r.Get(tableOutgoing.key(k))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		if err != nil {
			return pebbleError(s.path, "read", err)
		}
		defer closer.Close()
		if o, err = outgoingKV(k, v); err != nil {
			return corruptError(s.path, fmt.Sprintf("table %q key %x", tableOutgoing, k), err)
		}
		ok = true
		return nil
	})
	return o, ok, err
}

// Counts is how many records the outbox and the dead letters hold.
type Counts struct {
	Outgoing, DeadLetters int
}

// Count counts the records of the outbox and the dead letters from their
// keys, without decoding (or copying) the records: a status report costs
// the same however large the payloads.
func (s *Store) Count() (Counts, error) {
	var c Counts
	err := s.view(true, func(r pebble.Reader) error {
		var err error
		if c.Outgoing, err = countTable(r, s.path, tableOutgoing); err != nil {
			return err
		}
		c.DeadLetters, err = countTable(r, s.path, tableDeadLetters)
		return err
	})
	return c, err
}

func countTable(r pebble.Reader, path string, table tableID) (n int, err error) {
	lower, upper := table.bounds()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, pebbleError(path, "read", err)
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			n, err = 0, pebbleError(path, "read", cerr)
		}
	}()
	for valid := it.First(); valid; valid = it.Next() {
		n++
	}
	if err := it.Error(); err != nil {
		return 0, pebbleError(path, "read", err)
	}
	return n, nil
}

// eachRecord walks table a page at a time (see pageRecords), each page
// read under the store's read lock and handed to fn outside it.
func eachRecord[T any](ctx context.Context, s *Store, table tableID, decode func(k, v []byte) (T, error), fn func(T) error) error {
	lower, upper := table.bounds()
	from := lower
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var page []T
		var next []byte // the key after the page's last; nil: the table ended
		err := s.view(false, func(r pebble.Reader) (err error) {
			page, next, err = readPage(r, s.path, table, from, upper, decode)
			return err
		})
		if err != nil {
			return err
		}
		for _, rec := range page {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(rec); err != nil {
				return err
			}
		}
		if next == nil {
			return nil
		}
		from = next
	}
}

// readPage decodes the records of table from key from (inclusive) on, up
// to a page (pageRecords, pageBytes); next is where the next page starts,
// nil when the table has no more.
func readPage[T any](r pebble.Reader, path string, table tableID, from, upper []byte, decode func(k, v []byte) (T, error)) (page []T, next []byte, err error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: upper})
	if err != nil {
		return nil, nil, pebbleError(path, "read", err)
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			page, next, err = nil, nil, pebbleError(path, "read", cerr)
		}
	}()
	size := 0
	for valid := it.First(); valid; valid = it.Next() {
		if len(page) == pageRecords || (len(page) > 0 && size >= pageBytes) {
			return page, bytes.Clone(it.Key()), nil
		}
		k := it.Key()[1:]
		v, verr := it.ValueAndErr()
		if verr != nil {
			return nil, nil, pebbleError(path, "read", verr)
		}
		rec, err := decode(k, v)
		if err != nil {
			return nil, nil, corruptError(path, fmt.Sprintf("table %q key %x", table, k), err)
		}
		page = append(page, rec)
		size += len(v)
	}
	if err := it.Error(); err != nil {
		return nil, nil, pebbleError(path, "read", err)
	}
	return page, nil, nil
}

// Stamp is an exchange's ID and the time its record is ordered by: when an
// outbox exchange was created, when a dead letter failed.
type Stamp struct {
	ID uint64
	At time.Time
}

// EachOutgoingStamp calls fn with the ID and creation time of each exchange
// of the outbox, by ID, as EachOutgoing does with the whole records, but
// decoding nothing else: a caller that orders the outbox before it reads
// the records one at a time (Outgoing) walks it without copying a payload.
// The rest of a record is checked when it is read.
func (s *Store) EachOutgoingStamp(ctx context.Context, fn func(Stamp) error) error {
	return eachRecord(ctx, s, tableOutgoing, func(k, v []byte) (Stamp, error) {
		return stamp(k, v, outCreated)
	}, fn)
}

// EachDeadLetterStamp calls fn with the ID and failure time of each dead
// letter, as EachOutgoingStamp does with the outbox.
func (s *Store) EachDeadLetterStamp(ctx context.Context, fn func(Stamp) error) error {
	return eachRecord(ctx, s, tableDeadLetters, func(k, v []byte) (Stamp, error) {
		return stamp(k, v, deadFailed)
	}, fn)
}

// stamp decodes the ID from a record's key and the time from its field
// num, skipping the other fields.
func stamp(k, v []byte, num protowire.Number) (Stamp, error) {
	id, err := parseIDKey(k)
	if err != nil {
		return Stamp{}, err
	}
	b, err := body(v)
	if err != nil {
		return Stamp{}, err
	}
	st := Stamp{ID: id}
	err = walkFields(b, func(f field) (err error) {
		if f.num == num {
			st.At, err = f.time()
		}
		return err
	})
	return st, err
}
