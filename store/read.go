package store

import (
	"cmp"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// State is everything on disk, read by the handler when it starts.
type State struct {
	Outgoing    []Outgoing   // by ID
	Incoming    []Incoming   // by (Peer, ID)
	DeadLetters []DeadLetter // by ID
}

// Load reads every record in one read-only transaction, so the three lists
// are one consistent snapshot. A record that does not decode, or whose key
// disagrees with its content, fails Load with ErrCorrupt naming its bucket
// and key: the handler must not start on a state it cannot fully read.
func (s *Store) Load() (State, error) {
	var st State
	err := view(s.db, s.path, func(tx *bolt.Tx) error {
		var err error
		if st.Outgoing, err = readBucket(tx, s.path, bucketOutgoing, outgoingKV); err != nil {
			return err
		}
		if st.Incoming, err = readBucket(tx, s.path, bucketIncoming, incomingKV); err != nil {
			return err
		}
		st.DeadLetters, err = readBucket(tx, s.path, bucketDeadLetters, deadLetterKV)
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
	err := view(s.db, s.path, func(tx *bolt.Tx) error {
		var err error
		out, err = readBucket(tx, s.path, bucketDeadLetters, deadLetterKV)
		return err
	})
	return out, err
}

// OutgoingList returns the outbox, by ID.
func (s *Store) OutgoingList() ([]Outgoing, error) {
	var out []Outgoing
	err := view(s.db, s.path, func(tx *bolt.Tx) error {
		var err error
		out, err = readBucket(tx, s.path, bucketOutgoing, outgoingKV)
		return err
	})
	return out, err
}

// Incoming returns the record of exchange id received from peer; ok is
// false when there is none. The handler reads a stored reply this way when
// a request it answered comes again, rather than keep every reply in
// memory.
func (s *Store) Incoming(peer string, id uint64) (in Incoming, ok bool, err error) {
	err = view(s.db, s.path, func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketIncoming.name())
		if bk == nil {
			return corruptError(s.path, fmt.Sprintf("no %q bucket", bucketIncoming), nil)
		}
		k := incomingKey(peer, id)
		v := bk.Get(k)
		if v == nil {
			return nil
		}
		var err error
		if in, err = incomingKV(k, v); err != nil {
			return corruptError(s.path, fmt.Sprintf("bucket %q key %x", bucketIncoming, k), err)
		}
		ok = true
		return nil
	})
	return in, ok, err
}

// readBucket decodes every record of bucket, in key order.
func readBucket[T any](tx *bolt.Tx, path string, bucket bucketID, decode func(k, v []byte) (T, error)) ([]T, error) {
	bk := tx.Bucket(bucket.name())
	if bk == nil {
		return nil, corruptError(path, fmt.Sprintf("no %q bucket", bucket), nil)
	}
	var out []T
	err := bk.ForEach(func(k, v []byte) error {
		if v == nil {
			return corruptError(path, fmt.Sprintf("bucket %q key %x", bucket, k), fmt.Errorf("nested bucket where a record belongs"))
		}
		rec, err := decode(k, v)
		if err != nil {
			return corruptError(path, fmt.Sprintf("bucket %q key %x", bucket, k), err)
		}
		out = append(out, rec)
		return nil
	})
	if err != nil {
		return nil, err
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
