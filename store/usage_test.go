package store

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// The size cap's estimate (usage.go). The tests set the committer's account
// between commits: a returned Commit orders the committer's last use of it
// before the test's, and the next CommitAsync orders the test's before the
// committer's next.

// A fresh measurement serves the next groups, which add what they commit
// to it: the committer does not ask pebble before every group.
func TestUsageEstimateAddsWhatIsCommitted(t *testing.T) {
	s := openT(t, t.TempDir(), Options{MaxBytes: 1 << 30})
	closeT(t, s)
	commitT(t, s, func(b *Batch) { b.PutOutgoing(outgoing(1)) })
	const fake = 12345 // not what pebble would say: shows who answered
	s.usage = usage{measured: fake, at: time.Now(), maxAge: time.Hour}
	var want int64
	for id := uint64(2); id < 10; id++ {
		var b Batch
		b.PutOutgoing(outgoing(id))
		want += b.size
		if err := s.Commit(&b); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.usage; got.measured != fake || got.grown != want {
		t.Fatalf("after 8 commits: measured %d, grown %d; want %d and %d (no new measurement)", got.measured, got.grown, int64(fake), want)
	}
}

// The estimate is measured again when it is stale, when it has grown by a
// hundredth of the cap, and when it comes near the cap.
func TestUsageEstimateIsMeasuredAgain(t *testing.T) {
	const limit = 1 << 30
	s := openT(t, t.TempDir(), Options{MaxBytes: limit})
	closeT(t, s)
	commitT(t, s, func(b *Batch) { b.PutOutgoing(outgoing(1)) })
	real, err := s.used()
	if err != nil {
		t.Fatal(err)
	}
	for name, u := range map[string]usage{
		"stale":      {measured: 1, at: time.Now().Add(-time.Hour), maxAge: time.Minute},
		"grown":      {measured: 1, at: time.Now(), grown: limit / 100, maxAge: time.Hour},
		"near limit": {measured: limit - limit/100, at: time.Now(), maxAge: time.Hour},
		"over limit": {measured: 2 * limit, at: time.Now(), maxAge: time.Hour},
	} {
		s.usage = u
		got, err := s.inUse()
		if err != nil {
			t.Fatal(err)
		}
		// Nothing writes meanwhile, so a new measurement is what used says.
		if got != real {
			t.Errorf("%s: estimate %d, want a new measurement (%d)", name, got, real)
		}
	}
}

// A store whose estimate says full, but which is not, takes a write: the
// estimate never refuses on its own.
func TestUsageEstimateNeverRefusesAlone(t *testing.T) {
	s := openT(t, t.TempDir(), Options{MaxBytes: 1 << 30})
	closeT(t, s)
	commitT(t, s, func(b *Batch) { b.PutOutgoing(outgoing(1)) })
	s.usage = usage{measured: 1 << 30, at: time.Now(), maxAge: time.Hour}
	commitT(t, s, func(b *Batch) { b.PutOutgoing(outgoing(2)) })
}

// With measurements spaced only by growth (never by age), a store still
// fills at its cap: each commit's records count against it from the moment
// they are committed, before pebble is asked again.
func TestUsageEstimateFillsTheStore(t *testing.T) {
	const limit = 16 << 20
	s := openT(t, t.TempDir(), Options{MaxBytes: limit})
	closeT(t, s)
	commitT(t, s, func(b *Batch) { b.PutOutgoing(outgoing(1)) })
	s.usage.maxAge = time.Hour
	// Random payloads, which compression cannot shrink, a fifth of the
	// growth that calls for a new measurement each.
	rnd := rand.NewChaCha8([32]byte{9})
	var err error
	var written int64
	for id := uint64(2); id < 1000 && err == nil; id++ {
		o := outgoing(id)
		o.Payload = make([]byte, limit/500)
		_, _ = rnd.Read(o.Payload)
		var b Batch
		b.PutOutgoing(o)
		if err = s.Commit(&b); err == nil {
			written += b.size
		}
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("after %d bytes: %v, want ErrFull", written, err)
	}
	if written > limit {
		t.Errorf("took %d bytes into a store of %d", written, limit)
	}
}

// The cap bounds the disk the store takes, as du counts it: pebble's
// write-ahead logs, preallocated and kept for reuse, count, and a store
// with a small cap has small ones. (A store capped at 1 MiB took 13.5 MB:
// 4.4 MB for each log, which the cap did not count.)
func TestCapBoundsDiskUse(t *testing.T) {
	const limit = 4 << 20
	s := openT(t, t.TempDir(), Options{MaxBytes: limit})
	closeT(t, s)
	rnd := rand.NewChaCha8([32]byte{11})
	var peak int64
	measure := func() {
		t.Helper()
		n, err := dirUsage(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		peak = max(peak, n)
	}
	for id := uint64(1); id <= 100; id++ {
		p := make([]byte, 100_000)
		_, _ = rnd.Read(p)
		// A request sent and answered, and one received and handled.
		o := outgoing(id)
		o.Payload = p
		commitT(t, s, func(b *Batch) { b.PutOutgoing(o) })
		measure()
		commitT(t, s, func(b *Batch) { b.DeleteOutgoing(id) })
		in := incoming("peer", id)
		in.Payload = p
		commitT(t, s, func(b *Batch) { b.AddIncoming(in) })
		measure()
		in.State, in.Payload = InHandled, nil
		commitT(t, s, func(b *Batch) { b.PutIncoming(in) })
		measure()
	}
	if peak > limit {
		t.Fatalf("the store took %d bytes of disk, capped at %d", peak, limit)
	}
}
