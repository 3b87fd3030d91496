package main

import (
	"context"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// The lists of outbox list and deadletters list, read from a store (the
// running node's, for its control API, or a stopped node's, by the CLI)
// one exchange at a time: an outbox of gigabytes is never in memory at
// once, on either end of the control socket.

// headBytes is the start of a payload a list sends when the output shows
// only a preview: previewRunes runes and one more (to tell a cut), of at
// most 4 bytes each.
const headBytes = 4 * (previewRunes + 1)

// listKey is what a list is ordered by, without the record's payload.
type listKey struct {
	id uint64
	at time.Time
}

// walkOutbox calls fn with each exchange of st's outbox, oldest first (by
// creation; exchange ID among equals), until fn fails or ctx ends. It
// reads the store twice, a page at a time: the order first (IDs and
// times, decoding nothing else, so no payload is copied), then each record
// by its ID, so it holds one record at a time and not the payloads of all
// of them. An exchange that leaves the outbox meanwhile (it ended) is
// skipped.
func walkOutbox(ctx context.Context, st *store.Store, fn func(store.Outgoing) error) error {
	var keys []listKey
	err := st.EachOutgoingStamp(ctx, func(s store.Stamp) error {
		keys = append(keys, listKey{s.ID, s.At})
		return nil
	})
	if err != nil {
		return err
	}
	return walkKeys(ctx, keys, st.Outgoing, fn)
}

// walkDeadLetters calls fn with each dead letter of st by the time it
// failed, as walkOutbox does.
func walkDeadLetters(ctx context.Context, st *store.Store, fn func(store.DeadLetter) error) error {
	var keys []listKey
	err := st.EachDeadLetterStamp(ctx, func(s store.Stamp) error {
		keys = append(keys, listKey{s.ID, s.At})
		return nil
	})
	if err != nil {
		return err
	}
	return walkKeys(ctx, keys, st.DeadLetter, fn)
}

// walkKeys sorts keys by time (stable: the store's ID order among equals)
// and calls fn with the record get finds for each.
func walkKeys[T any](ctx context.Context, keys []listKey, get func(uint64) (T, bool, error), fn func(T) error) error {
	slices.SortStableFunc(keys, func(a, b listKey) int { return a.at.Compare(b.at) })
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, ok, err := get(k.id)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

// outboxPB is an outbox exchange as the control API lists it: with its
// whole payload, or its first headBytes (payloads false).
func outboxPB(o store.Outgoing, payloads bool) *pb.Stored {
	s := storedPB(o, payloads)
	if !o.Ended.IsZero() {
		s.EndedUnixNs, s.Reason, s.Error = o.Ended.UnixNano(), o.Reason, o.Error
	}
	return s
}

// deadLetterPB is a dead letter as the control API lists it.
func deadLetterPB(d store.DeadLetter, payloads bool) *pb.Stored {
	s := storedPB(d.Outgoing, payloads)
	s.EndedUnixNs, s.Reason, s.Error = d.Failed.UnixNano(), d.Reason, d.Error
	return s
}

func storedPB(o store.Outgoing, payloads bool) *pb.Stored {
	s := &pb.Stored{Id: o.ID, Peer: []byte(o.Peer), Addr: o.Addr, Kind: uint32(o.Kind), Tag: o.Tag,
		Attempts: int32(o.Attempts), CreatedUnixNs: o.Created.UnixNano(), Payload: o.Payload,
		PayloadSize: int64(len(o.Payload)), PayloadUtf8: utf8.Valid(o.Payload)}
	if !payloads && len(s.Payload) > headBytes {
		s.Payload = s.Payload[:headBytes]
	}
	return s
}
