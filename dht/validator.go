package dht

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
)

// validator is the record.Validator of the Namespace: kad-dht runs it on
// every record it stores (ours and those other nodes put) and on every record
// a lookup receives, and Find runs it again on the result.
type validator struct {
	list *allowlist.List
	// self is the local node, whose own records are valid even when the
	// local allowlist does not list it.
	self peer.ID
	now  func() time.Time
	// retain is how long past its expiry a record is still stored and
	// served, so that readers can tell an inactive node from an unknown one.
	retain time.Duration
	// sealed: the node runs with a membership document, so records are
	// sealed (format 2) and plain ones are refused.
	sealed bool
	// otherFormat, if set, hears of an allowlisted peer's record refused
	// for its format alone.
	otherFormat func(peer.ID, error)
	// opened remembers records whose signature verified: kad-dht validates
	// the same bytes several times per store and per lookup, and a
	// secp256k1 verification dominated the DHT's CPU profile.
	opened openedCache
}

var _ record.Validator = (*validator)(nil)

// Validate accepts value under key when it is a well-formed record, signed
// by the key's own peer, of an allowlisted peer, not published in the future
// and not expired for longer than the retention.
func (v *validator) Validate(key string, value []byte) error {
	_, err := v.verify(key, value)
	return err
}

// verify is Validate returning the record.
func (v *validator) verify(key string, value []byte) (Record, error) {
	p, err := parseRecordKey(key)
	if err != nil {
		return Record{}, err
	}
	if p != v.self && !v.list.Contains(p) {
		return Record{}, fmt.Errorf("%w: %s", ErrNotAllowlisted, p)
	}
	r, err := v.open(p, value)
	if err != nil {
		if v.otherFormat != nil && errors.Is(err, errOtherFormat) {
			v.otherFormat(p, err)
		}
		return Record{}, err
	}
	now := v.now()
	if r.Published.After(now.Add(MaxClockSkew)) {
		return Record{}, fmt.Errorf("%w: published %s in the future", ErrInvalidRecord, r.Published.Sub(now))
	}
	if now.After(r.Expires.Add(v.retain)) {
		return Record{}, fmt.Errorf("%w: expired %s ago, retained %s", ErrExpired, now.Sub(r.Expires), v.retain)
	}
	return r, nil
}

// Select returns the index of the record with the highest Seq among those
// that open. It does not look at the clock, so its choice is stable: the
// newest record of a node wins even when it has expired (the node said it
// last). Equal Seqs, which an honest node never signs twice, are broken by
// the bytes so that every node picks the same one.
func (v *validator) Select(key string, values [][]byte) (int, error) {
	p, err := parseRecordKey(key)
	if err != nil {
		return 0, err
	}
	best := -1
	var bestSeq uint64
	for i, val := range values {
		r, err := v.open(p, val)
		if err != nil {
			continue
		}
		if best < 0 || r.Seq > bestSeq || (r.Seq == bestSeq && bytes.Compare(val, values[best]) > 0) {
			best, bestSeq = i, r.Seq
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("%w: none of %d records is valid", ErrInvalidRecord, len(values))
	}
	return best, nil
}

// open is openRecord, remembering successes.
func (v *validator) open(p peer.ID, value []byte) (Record, error) {
	h := openedKey(p, value)
	if r, ok := v.opened.get(h); ok {
		return r, nil
	}
	var r Record
	var err error
	if v.sealed {
		r, err = openSealedHeader(p, value)
	} else if r, err = openRecord(p, value); err != nil {
		// Say so when it is a sealed record, rather than what failed to
		// parse.
		if ferr := formatMismatch(value, RecordPayloadType); ferr != nil {
			err = ferr
		}
	}
	if err != nil {
		return Record{}, err
	}
	v.opened.put(h, r)
	return r, nil
}

// openedCacheSize bounds the verified records remembered: a few per
// allowlisted peer.
const openedCacheSize = 1024

// openedCache is a bounded set of verified records, keyed by a hash of the
// peer and the exact bytes, evicting the oldest first. A record is immutable
// and its verification deterministic, so a hit is as good as verifying
// again; SHA-256 makes it impossible to pass other bytes off as a hit.
type openedCache struct {
	mu    sync.Mutex
	m     map[[sha256.Size]byte]Record
	order [][sha256.Size]byte // insertion order, a ring of openedCacheSize
	next  int
}

func openedKey(p peer.ID, value []byte) [sha256.Size]byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
	h.Write([]byte(p))
	h.Write(value)
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (c *openedCache) get(k [sha256.Size]byte) (Record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[k]
	if ok {
		r.Addrs = slices.Clone(r.Addrs)
	}
	return r, ok
}

func (c *openedCache) put(k [sha256.Size]byte, r Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[sha256.Size]byte]Record, openedCacheSize)
		c.order = make([][sha256.Size]byte, 0, openedCacheSize)
	}
	if _, ok := c.m[k]; ok {
		return
	}
	r.Addrs = slices.Clone(r.Addrs)
	if len(c.order) < openedCacheSize {
		c.order = append(c.order, k)
	} else {
		delete(c.m, c.order[c.next])
		c.order[c.next] = k
		c.next = (c.next + 1) % openedCacheSize
	}
	c.m[k] = r
}
