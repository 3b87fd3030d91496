package store

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// State is everything on disk, read by the handler when it starts.
type State struct {
	Outgoing    []Outgoing   // by ID
	Incoming    []Incoming   // by (Peer, ID)
	DeadLetters []DeadLetter // by ID
}

// Load reads every record from one pebble snapshot, so the three lists are
// one consistent view. A record that does not decode, or whose key disagrees
// with its content, fails Load with ErrCorrupt naming its table and key: the
// handler must not start on a state it cannot fully read.
func (s *Store) Load() (State, error) {
	var st State
	err := s.view(true, func(r pebble.Reader) error {
		var err error
		if st.Outgoing, err = readTable(r, s.path, tableOutgoing, outgoingKV); err != nil {
			return err
		}
		if st.Incoming, err = readTable(r, s.path, tableIncoming, incomingKV); err != nil {
			return err
		}
		st.DeadLetters, err = readTable(r, s.path, tableDeadLetters, deadLetterKV)
		return err
	})
	if err != nil {
		return State{}, err
	}
	// Keys order incoming records by peer length first; the promise is by
	// peer, then ID.
	slices.SortFunc(st.Incoming, func(a, b Incoming) int {
		return cmp.Or(cmp.Compare(a.Peer, b.Peer), cmp.Compare(a.ID, b.ID))
	})
	return st, nil
}

// DeadLetters returns the dead letters, by ID.
func (s *Store) DeadLetters() ([]DeadLetter, error) {
	var out []DeadLetter
	err := s.view(false, func(r pebble.Reader) error {
		var err error
		out, err = readTable(r, s.path, tableDeadLetters, deadLetterKV)
		return err
	})
	return out, err
}

// DeadLetter returns the dead letter with exchange ID id; ok is false when
// there is none. The handler looks up the dead letters an operator names
// this way (retry, drop) rather than decode the whole store with Load.
func (s *Store) DeadLetter(id uint64) (d DeadLetter, ok bool, err error) {
	err = s.view(false, func(r pebble.Reader) error {
		k := idKey(id)
		v, closer, err := r.Get(tableDeadLetters.key(k))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		if err != nil {
			return pebbleError(s.path, "read", err)
		}
		defer closer.Close()
		if d, err = deadLetterKV(k, v); err != nil {
			return corruptError(s.path, fmt.Sprintf("table %q key %x", tableDeadLetters, k), err)
		}
		ok = true
		return nil
	})
	return d, ok, err
}

// OutgoingList returns the outbox, by ID.
func (s *Store) OutgoingList() ([]Outgoing, error) {
	var out []Outgoing
	err := s.view(false, func(r pebble.Reader) error {
		var err error
		out, err = readTable(r, s.path, tableOutgoing, outgoingKV)
		return err
	})
	return out, err
}

// Incoming returns the record of exchange id received from peer; ok is
// false when there is none. The handler reads a stored reply this way when
// a request it answered comes again, rather than keep every reply in
// memory.
func (s *Store) Incoming(peer string, id uint64) (in Incoming, ok bool, err error) {
	if validPeer(peer) != nil {
		return Incoming{}, false, nil // no such key can have been written
	}
	err = s.view(false, func(r pebble.Reader) error {
		k := incomingKey(peer, id)
		v, closer, err := r.Get(tableIncoming.key(k))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		if err != nil {
			return pebbleError(s.path, "read", err)
		}
		defer closer.Close()
		if in, err = incomingKV(k, v); err != nil {
			return corruptError(s.path, fmt.Sprintf("table %q key %x", tableIncoming, k), err)
		}
		ok = true
		return nil
	})
	return in, ok, err
}

// view runs fn on the store, or on a snapshot of it (for reads that must
// agree with each other; one iterator or Get is consistent by itself),
// failing with ErrClosed once the store is closed and turning pebble's
// panics on damaged files into ErrCorrupt.
//
// Once pebble has failed (a fatal commit error: see fail), reads fail
// too: pebble applies a batch to its memtable before its write-ahead log
// write is known to be durable, so a read would show the records of the
// commit that failed, which its caller was told were not stored (and which
// a restart may or may not find).
func (s *Store) view(snapshot bool, fn func(pebble.Reader) error) (err error) {
	s.rw.RLock()
	defer s.rw.RUnlock()
	if s.dbClosed {
		return closedError(s.path)
	}
	if fe := s.failed.Load(); fe != nil {
		return fmt.Errorf("store: %s failed, and reads no more (what it holds may include a commit that failed; "+
			"a restart reads what is on disk): %w", s.path, fe)
	}
	defer recoverPebble(s.path, &err)
	if !snapshot {
		return fn(s.db)
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	return fn(snap)
}

// readTable decodes every record of table, in key order.
func readTable[T any](r pebble.Reader, path string, table tableID, decode func(k, v []byte) (T, error)) (out []T, err error) {
	lower, upper := table.bounds()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, pebbleError(path, "read", err)
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			out, err = nil, pebbleError(path, "read", cerr)
		}
	}()
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()[1:]
		v, verr := it.ValueAndErr()
		if verr != nil {
			return nil, pebbleError(path, "read", verr)
		}
		rec, err := decode(k, v)
		if err != nil {
			return nil, corruptError(path, fmt.Sprintf("table %q key %x", table, k), err)
		}
		out = append(out, rec)
	}
	if err := it.Error(); err != nil {
		return nil, pebbleError(path, "read", err)
	}
	return out, nil
}

func outgoingKV(k, v []byte) (Outgoing, error) {
	id, err := parseIDKey(k)
	if err != nil {
		return Outgoing{}, err
	}
	o, err := decodeOutgoing(v)
	if err != nil {
		return Outgoing{}, err
	}
	if o.ID != id {
		return Outgoing{}, fmt.Errorf("record for exchange %d under key %d", o.ID, id)
	}
	return o, nil
}

func incomingKV(k, v []byte) (Incoming, error) {
	peer, id, err := parseIncomingKey(k)
	if err != nil {
		return Incoming{}, err
	}
	in, err := decodeIncoming(v)
	if err != nil {
		return Incoming{}, err
	}
	if in.Peer != peer || in.ID != id {
		return Incoming{}, fmt.Errorf("record for %q/%d under key %q/%d", in.Peer, in.ID, peer, id)
	}
	return in, nil
}

func deadLetterKV(k, v []byte) (DeadLetter, error) {
	id, err := parseIDKey(k)
	if err != nil {
		return DeadLetter{}, err
	}
	d, err := decodeDeadLetter(v)
	if err != nil {
		return DeadLetter{}, err
	}
	if d.ID != id {
		return DeadLetter{}, fmt.Errorf("record for exchange %d under key %d", d.ID, id)
	}
	return d, nil
}
