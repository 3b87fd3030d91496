package store

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// A growing batch that a full store parks for a reclaim holds back no
// other: a batch that does not grow the records, queued behind it, is
// committed while the reclaim has not even started (the test holds it
// back). The committer waited in the group for the reclaim, up to a
// second, and every writer behind it with it; a store full of live
// records made each group with a growing batch wait the whole second.
// A batch that writes the record a parked batch writes goes through only
// once that one is refused, so that the two are not applied out of order;
// an empty batch is reported after every batch queued before it.
func TestParkedBatchHoldsBackNoOther(t *testing.T) {
	const limit = 4 << 20
	started := make(chan struct{}, 1)
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	s := openT(t, t.TempDir(), Options{MaxBytes: limit, reclaimWait: time.Minute,
		reclaiming: func() {
			select {
			case started <- struct{}{}:
			default:
			}
			<-gate
		},
		tune: func(o *pebble.Options) { o.DisableAutomaticCompactions = true }})
	closeT(t, s)
	t.Cleanup(release) // before Close, which waits for the reclaimer

	rnd := rand.NewChaCha8([32]byte{21})
	record := func(id uint64) Outgoing {
		o := outgoing(id)
		o.Payload = make([]byte, 64<<10) // random: compression cannot shrink it
		_, _ = rnd.Read(o.Payload)
		return o
	}
	var mu sync.Mutex
	var order []string
	async := func(name string, fill func(*Batch)) <-chan error {
		var b Batch
		if fill != nil {
			fill(&b)
		}
		ch := make(chan error, 1)
		s.CommitAsync(&b, func(err error) {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			ch <- err
		})
		return ch
	}
	// Live records fill the store, until the full store asks for a reclaim
	// (the last of them may be parked for it).
	var id uint64
	var first <-chan error
	for {
		id++
		if id > 1000 {
			t.Fatal("the store never filled")
		}
		o := record(id)
		ch := async("fill", func(b *Batch) { b.PutOutgoing(o) })
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("put %d: %v", id, err)
			}
			continue
		case <-started:
			first = ch
		}
		break
	}
	// The store is full, its reclaim held back: a put parks.
	id++
	grown := id
	o := record(grown)
	grow := async("grow", func(b *Batch) { b.PutOutgoing(o) })
	same := record(1) // of the size of record 1
	if err := recv(t, async("overwrite", func(b *Batch) { b.PutOutgoing(same) }), "the overwrite"); err != nil {
		t.Fatalf("overwrite on a full store: %v", err)
	}
	select {
	case err := <-grow:
		t.Fatalf("the growing put was decided (%v) before the reclaim ended", err)
	default: // parked, as it must be: the reclaim has not run
	}

	again := record(grown) // a second put of the record parks behind the first
	grow2 := async("grow2", func(b *Batch) { b.PutOutgoing(again) })
	barrier := async("barrier", nil)
	if err := recv(t, async("delete", func(b *Batch) { b.DeleteOutgoing(grown) }), "the delete"); err != nil {
		t.Fatalf("delete on a full store: %v", err)
	}
	for i, ch := range []<-chan error{grow, grow2} {
		if err := recv(t, ch, "a growing put"); !errors.Is(err, ErrFull) {
			t.Errorf("growing put %d, overtaken by a delete of its record: %v, want ErrFull", i+1, err)
		}
	}
	release()
	recv(t, first, "the last fill")
	recv(t, barrier, "the empty batch")
	for _, o := range loadT(t, s).Outgoing {
		if o.ID == grown {
			t.Error("a put parked is applied after the delete queued after it")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	at, lastFill := make(map[string]int), -1
	for i, name := range order {
		at[name] = i
		if name == "fill" {
			lastFill = i
		}
	}
	if at["grow"] > at["delete"] || at["grow2"] > at["delete"] {
		t.Errorf("callbacks in order %v: a parked put is reported after the delete of its record", order)
	}
	if at["barrier"] < at["grow"] || at["barrier"] < lastFill {
		t.Errorf("callbacks in order %v: the empty batch is reported before a batch queued before it", order)
	}
}

// Nothing waits for a reclaim when the last one freed less than a 32nd of
// the cap: the store holds live records, and the next reclaim is put off
// by the spacing. A growing put on a store full of live records is refused
// while the reclaim the writes since have asked for is held back. (It
// waited for it, up to a second.)
func TestNoWaitAfterAReclaimThatFreedLittle(t *testing.T) {
	const limit = 4 << 20
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	var mu sync.Mutex
	reclaims := 0
	s := openT(t, t.TempDir(), Options{MaxBytes: limit, reclaimWait: time.Minute,
		reclaiming: func() {
			mu.Lock()
			reclaims++
			n := reclaims
			mu.Unlock()
			if n > 1 {
				<-gate
			}
		},
		tune: func(o *pebble.Options) { o.DisableAutomaticCompactions = true }})
	closeT(t, s)
	t.Cleanup(release) // before Close, which waits for the reclaimer

	rnd := rand.NewChaCha8([32]byte{22})
	record := func(id uint64) Outgoing {
		o := outgoing(id)
		o.Payload = make([]byte, 64<<10) // random: compression cannot shrink it
		_, _ = rnd.Read(o.Payload)
		return o
	}
	// Live records fill the store; the put refused waited for the first
	// reclaim, which freed nothing.
	var id uint64
	for {
		id++
		if id > 1000 {
			t.Fatal("the store never filled")
		}
		var b Batch
		b.PutOutgoing(record(id))
		err := s.Commit(&b)
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatalf("put %d: %v", id, err)
		}
	}
	// An overwrite goes through and asks for a reclaim, held back.
	commitT(t, s, func(b *Batch) { b.PutOutgoing(record(1)) })
	var b Batch
	b.PutOutgoing(record(id + 1))
	ch := make(chan error, 1)
	s.CommitAsync(&b, func(err error) { ch <- err })
	if err := recv(t, ch, "the growing put"); !errors.Is(err, ErrFull) {
		t.Errorf("a growing put on a store full of live records: %v, want ErrFull", err)
	}
}
