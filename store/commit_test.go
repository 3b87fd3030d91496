package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGroupCommitSharesTransactions(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	const writers = 64

	// Free-running: 64 concurrent writers must share transactions.
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			var b Batch
			b.PutOutgoing(outgoing(uint64(i + 1)))
			errs <- s.Commit(&b)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
	st := s.Stats()
	if st.Commits >= writers || st.Batches != writers {
		t.Errorf("stats %+v: want fewer than %d commits for %d batches", st, writers, writers)
	}
	if n := len(loadT(t, s).Outgoing); n != writers {
		t.Errorf("%d records on disk, want %d", n, writers)
	}

	// Deterministic: everything queued while a commit runs is the next
	// group, one transaction.
	before := s.Stats()
	release := holdCommitter(s)
	done := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			var b Batch
			b.PutOutgoing(outgoing(uint64(1000 + i)))
			done <- s.Commit(&b)
		})
	}
	waitQueued(t, s, writers)
	release()
	wg.Wait()
	close(done)
	for err := range done {
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
	after := s.Stats()
	if got := after.Commits - before.Commits; got != 1 {
		t.Errorf("%d batches queued together took %d commits, want 1", writers, got)
	}
	if got := after.Batches - before.Batches; got != writers {
		t.Errorf("Batches grew by %d, want %d", got, writers)
	}
}

func TestLoneCommitAsyncIsNotHeldBack(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	// One writer and no other call: its callback must come without any
	// further batch arriving (no waiting for a batch to fill).
	done := make(chan error, 1)
	var b Batch
	b.PutOutgoing(outgoing(1))
	s.CommitAsync(&b, func(err error) { done <- err })
	if err := recv(t, done, "the lone batch's callback"); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Commits != 1 || st.Batches != 1 {
		t.Errorf("stats %+v, want 1 commit of 1 batch", st)
	}
}

func TestCommitAsyncCallbacksInQueueOrder(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	const n = 200
	var got []int // appended only on the committer goroutine
	// Half of them queue behind a running commit (one group), the other
	// half as they come (several groups).
	release := holdCommitter(s)
	for i := range n {
		if i == n/2 {
			release()
		}
		var b Batch
		b.PutOutgoing(outgoing(uint64(i + 1)))
		s.CommitAsync(&b, func(err error) {
			if err != nil {
				t.Errorf("batch %d: %v", i, err)
			}
			got = append(got, i)
		})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d callbacks ran before Close returned, want %d", len(got), n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("callback %d was for batch %d: order %v", i, v, got)
		}
	}
}

func TestCloseWaitsForQueuedBatches(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	const n = 50
	var called atomic.Int32
	release := holdCommitter(s)
	for i := range n {
		var b Batch
		b.PutOutgoing(outgoing(uint64(i + 1)))
		s.CommitAsync(&b, func(err error) {
			if err != nil {
				t.Errorf("batch %d: %v", i, err)
			}
			called.Add(1)
		})
	}
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	release()
	if err := recv(t, closed, "Close"); err != nil {
		t.Fatal(err)
	}
	if got := called.Load(); got != n {
		t.Fatalf("Close returned after %d of %d callbacks", got, n)
	}
	s = openT(t, dir, Options{})
	closeT(t, s)
	if got := len(loadT(t, s).Outgoing); got != n {
		t.Errorf("%d records on disk after Close, want %d", got, n)
	}
}

func TestErrFull(t *testing.T) {
	// Above pebble's own files (1.2 MB for the least memtable: see
	// memTableFor), which are all that is left once the records are gone.
	s := openT(t, t.TempDir(), Options{MaxBytes: 3 << 20})
	closeT(t, s)

	rnd := rand.NewChaCha8([32]byte{5})
	big := func(id uint64) Outgoing {
		o := outgoing(id)
		o.Payload = make([]byte, 10_000) // random: compression cannot shrink it
		_, _ = rnd.Read(o.Payload)
		return o
	}
	dead := deadLetter(5001)
	dead.Outgoing = big(5001)
	commitT(t, s, func(b *Batch) {
		b.PutDeadLetter(dead)
		b.AddIncoming(incoming("p", 2))
	})
	var stored []uint64
	records := make(map[uint64]Outgoing)
	var full error
	for id := uint64(1); id <= 1000 && full == nil; id++ {
		var b Batch
		o := big(id)
		b.PutOutgoing(o)
		if full = s.Commit(&b); full == nil {
			stored = append(stored, id)
			records[id] = o
		}
	}
	if !errors.Is(full, ErrFull) {
		t.Fatalf("after %d puts: %v, want ErrFull", len(stored), full)
	}
	if !strings.Contains(full.Error(), s.Path()) {
		t.Errorf("message %q does not name the file", full)
	}
	// Adds of every kind are refused. (The store, full of live records,
	// reclaimed nothing when it refused the last put, and nothing was
	// written since: none waits for a reclaim.)
	for name, fill := range map[string]func(*Batch){
		"AddIncoming":   func(b *Batch) { b.AddIncoming(incoming("p", 1)) },
		"PutIncoming":   func(b *Batch) { b.PutIncoming(incoming("p", 1)) },
		"PutDeadLetter": func(b *Batch) { b.PutDeadLetter(deadLetter(1)) },
		"delete and a larger put": func(b *Batch) {
			b.DeleteOutgoing(stored[0])
			o := big(stored[1])
			o.Payload = bytes.Repeat(o.Payload, 3) // 20 kB more, for 10 kB deleted
			b.PutOutgoing(o)
		},
		// A record left as it was replaces nothing: the small record
		// beside it grows the store all the same. (It passed as a
		// replacement, within the 256 bytes allowed for one.)
		"AddIncoming of one there, and a small put": func(b *Batch) {
			b.AddIncoming(incoming("p", 2))
			b.PutOutgoing(outgoing(7001))
		},
		"a put of what is there, and a small put": func(b *Batch) {
			b.PutOutgoing(records[stored[0]])
			b.PutOutgoing(outgoing(7002))
		},
	} {
		var b Batch
		fill(&b)
		if err := s.Commit(&b); !errors.Is(err, ErrFull) {
			t.Errorf("%s on a full store: %v, want ErrFull", name, err)
		}
	}
	if got := len(loadT(t, s).Outgoing); got != len(stored) {
		t.Fatalf("refused batches changed the store: %d records, want %d", got, len(stored))
	}

	// In one group, a refused batch does not fail its neighbours.
	release := holdCommitter(s)
	results := make([]chan error, 3)
	for i, fill := range []func(*Batch){
		func(b *Batch) { b.DeleteOutgoing(stored[0]) },
		func(b *Batch) { b.PutOutgoing(big(5000)) },
		func(b *Batch) { b.DeleteOutgoing(stored[1]) },
	} {
		var b Batch
		fill(&b)
		results[i] = make(chan error, 1)
		s.CommitAsync(&b, func(err error) { results[i] <- err })
	}
	release()
	if err := recv(t, results[0], "delete"); err != nil {
		t.Errorf("delete before the refused batch: %v", err)
	}
	if err := recv(t, results[1], "put"); !errors.Is(err, ErrFull) {
		t.Errorf("put in the group: %v, want ErrFull", err)
	}
	if err := recv(t, results[2], "delete"); err != nil {
		t.Errorf("delete after the refused batch: %v", err)
	}

	// What does not grow the records goes through: a record replaced by
	// a smaller one or one of its size, or moved to another table, where
	// it is smaller or a little larger.
	for name, fill := range map[string]func(*Batch){
		"smaller": func(b *Batch) { b.PutOutgoing(outgoing(stored[2])) },
		"same size": func(b *Batch) {
			o := big(stored[3])
			o.Attempts++
			b.PutOutgoing(o)
		},
		"moved": func(b *Batch) { // a dead letter retried
			b.DeleteDeadLetter(dead.ID)
			b.PutOutgoing(dead.Outgoing)
		},
		"moved, a little larger": func(b *Batch) { // an exchange failed
			d := deadLetter(stored[5])
			d.Outgoing = big(stored[5])
			b.DeleteOutgoing(stored[5])
			b.PutDeadLetter(d)
		},
	} {
		var b Batch
		fill(&b)
		if err := s.Commit(&b); err != nil {
			t.Errorf("%s on a full store: %v", name, err)
		}
	}
	stored = append(stored, dead.ID)
	commitT(t, s, func(b *Batch) { b.DeleteDeadLetter(stored[5]) })

	// Deletes always go through, and the space they free is reused once
	// the full store has compacted them away, which it starts at once.
	commitT(t, s, func(b *Batch) {
		for _, id := range stored[2:] {
			b.DeleteOutgoing(id)
		}
	})
	if got := loadT(t, s).Outgoing; len(got) != 0 {
		t.Fatalf("%d records left after deleting all", len(got))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		used, err := s.used()
		if err != nil {
			t.Fatal(err)
		}
		if used < 2<<20 { // pebble's own files, and room
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after deleting everything: %d bytes in use", used)
		}
		time.Sleep(time.Millisecond)
	}
	for id := uint64(1); id <= 10; id++ {
		commitT(t, s, func(b *Batch) { b.PutOutgoing(big(id)) })
	}
}

func TestFullStoreShrinksAfterDeletes(t *testing.T) {
	const limit = 4 << 20
	s := openT(t, t.TempDir(), Options{MaxBytes: limit})
	closeT(t, s)
	// Random payloads, which compression cannot shrink, 16 per batch.
	rnd := rand.NewChaCha8([32]byte{7})
	var ids []uint64
	for id := uint64(1); ; {
		var b Batch
		for range 16 {
			o := outgoing(id)
			o.Payload = make([]byte, 4000)
			rnd.Read(o.Payload)
			b.PutOutgoing(o)
			ids = append(ids, id)
			id++
		}
		err := s.Commit(&b)
		if errors.Is(err, ErrFull) {
			ids = ids[:len(ids)-16]
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	full, err := s.used()
	if err != nil || full < limit {
		t.Fatalf("used %d (%v), want at least %d once full", full, err, limit)
	}
	// The records reached sstables (a flush), as on a long-running node.
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	commitT(t, s, func(b *Batch) {
		for _, id := range ids {
			b.DeleteOutgoing(id)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		used, err := s.used()
		if err != nil {
			t.Fatal(err)
		}
		// What is left is pebble's own files: write-ahead logs (kept
		// for reuse too), MANIFEST, OPTIONS.
		tables := s.db.Metrics().Table.Local
		if used < full/2 && tables.LiveSize+tables.ObsoleteSize < limit/16 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after deleting everything: %d bytes in use (%d when full), sstables %+v", used, full, tables)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestInvalidBatchFailsAloneAndWritesNothing(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	for name, fill := range map[string]func(*Batch){
		"zero ID":          func(b *Batch) { b.PutOutgoing(Outgoing{Peer: "p", Kind: KindRequest}) },
		"empty peer":       func(b *Batch) { b.PutOutgoing(Outgoing{ID: 1, Kind: KindRequest}) },
		"unknown kind":     func(b *Batch) { b.PutOutgoing(Outgoing{ID: 1, Peer: "p", Kind: 9}) },
		"negative attempt": func(b *Batch) { b.PutOutgoing(Outgoing{ID: 1, Peer: "p", Kind: KindMessage, Attempts: -1}) },
		"long peer":        func(b *Batch) { b.AddIncoming(incoming(strings.Repeat("p", 256), 1)) },
		"unknown state":    func(b *Batch) { in := incoming("p", 1); in.State = 0; b.PutIncoming(in) },
		"delete long peer": func(b *Batch) { b.DeleteIncoming(strings.Repeat("p", 256), 1) },
		"dead letter":      func(b *Batch) { d := deadLetter(1); d.Kind = 0; b.PutDeadLetter(d) },
	} {
		release := holdCommitter(s)
		good := make(chan error, 2)
		var before, bad, after Batch
		before.PutOutgoing(outgoing(1))
		bad.PutOutgoing(outgoing(2)) // valid, but in the same batch as the invalid record
		fill(&bad)
		after.PutOutgoing(outgoing(3))
		badErr := make(chan error, 1)
		s.CommitAsync(&before, func(err error) { good <- err })
		s.CommitAsync(&bad, func(err error) { badErr <- err })
		s.CommitAsync(&after, func(err error) { good <- err })
		release()
		if err := recv(t, badErr, name); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
		for range 2 {
			if err := recv(t, good, name); err != nil {
				t.Errorf("%s: neighbour failed: %v", name, err)
			}
		}
		want := []Outgoing{outgoing(1), outgoing(3)}
		if got := loadT(t, s).Outgoing; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: on disk %+v, want %+v", name, got, want)
		}
		commitT(t, s, func(b *Batch) { b.DeleteOutgoing(1); b.DeleteOutgoing(3) })
	}
}

func TestBatchRefusedWhenStagedIsRetriedAlone(t *testing.T) {
	// Validation keeps the committer from refusing a write; if it ever
	// does, half way through a batch, that batch fails and the group is
	// staged again without it.
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	release := holdCommitter(s)
	var good1, bad, good2 Batch
	good1.PutOutgoing(outgoing(1))
	bad.PutOutgoing(outgoing(2))
	bad.ops = append(bad.ops, op{kind: 99, table: tableOutgoing, key: idKey(4), value: []byte{1}})
	good2.PutOutgoing(outgoing(3))
	errs := make([]chan error, 3)
	for i, b := range []*Batch{&good1, &bad, &good2} {
		errs[i] = make(chan error, 1)
		s.CommitAsync(b, func(err error) { errs[i] <- err })
	}
	before := s.Stats()
	release()
	for i, wantErr := range []bool{false, true, false} {
		if err := recv(t, errs[i], "commit"); (err != nil) != wantErr {
			t.Errorf("batch %d: %v, want error %v", i, err, wantErr)
		}
	}
	if got := s.Stats().Commits - before.Commits; got != 1 {
		t.Errorf("%d commits, want 1", got)
	}
	want := []Outgoing{outgoing(1), outgoing(3)}
	if got := loadT(t, s).Outgoing; !reflect.DeepEqual(got, want) {
		t.Errorf("on disk %+v, want %+v (nothing of the refused batch)", got, want)
	}
}

func TestEmptyBatchWaitsForEarlierOnes(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	var order []string
	var b Batch
	b.PutOutgoing(outgoing(1))
	s.CommitAsync(&b, func(error) { order = append(order, "put") })
	if err := s.Commit(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(&Batch{}); err != nil {
		t.Fatal(err)
	}
	order = append(order, "barrier") // Commit returned: the callback ran before
	if !reflect.DeepEqual(order, []string{"put", "barrier"}) {
		t.Errorf("order %v", order)
	}
	if st := s.Stats(); st.Commits != 1 {
		t.Errorf("empty batches made %d commits, want 1 (the put's)", st.Commits)
	}
}

func TestLargeGroupIsCommittedInParts(t *testing.T) {
	defer func(v int64) { maxCommitBytes = v }(maxCommitBytes)
	maxCommitBytes = 8 << 10
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	release := holdCommitter(s)
	const n = 20
	var got []int
	errs := make(chan error, n)
	for i := range n {
		var b Batch
		o := outgoing(uint64(i + 1))
		o.Payload = make([]byte, 1500)
		b.PutOutgoing(o)
		// Every batch adds the same record: only the first one's stays,
		// whichever part the others are in.
		in := incoming("peer", 1)
		in.Payload = []byte(fmt.Sprint(i))
		b.AddIncoming(in)
		s.CommitAsync(&b, func(err error) {
			got = append(got, i)
			errs <- err
		})
	}
	before := s.Stats()
	release()
	for range n {
		if err := recv(t, errs, "commit"); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if commits := st.Commits - before.Commits; commits < 2 || commits > n/2 {
		t.Errorf("%d commits for %d batches of 1.5 KiB in parts of 8 KiB", commits, n)
	}
	if batches := st.Batches - before.Batches; batches != n {
		t.Errorf("%d batches written, want %d", batches, n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("callbacks out of order: %v", got)
		}
	}
	state := loadT(t, s)
	if len(state.Outgoing) != n || len(state.Incoming) != 1 || string(state.Incoming[0].Payload) != "0" {
		t.Errorf("%d outgoing, incoming %+v", len(state.Outgoing), state.Incoming)
	}
}

func TestBlockCacheHoldsBlocks(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	// 12 MB of records: pebble's memtables grow to their full size.
	for k := range 40 {
		var b Batch
		for i := range 1000 {
			b.AddIncoming(Incoming{Peer: "16Uiu2HAmPeerOne", ID: uint64(k*1000+i+1) * 0x9e3779b97f4a7c15, Kind: KindRequest,
				State: InPending, Payload: make([]byte, 256), Received: ts(1), Updated: ts(1)})
		}
		if err := s.Commit(&b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	// Look-ups that reach the table leave its blocks in the cache.
	for range 2 {
		for i := range 100 {
			if _, ok, err := s.Incoming("16Uiu2HAmPeerOne", uint64(i+1)*0x9e3779b97f4a7c15); err != nil || !ok {
				t.Fatalf("Incoming %d: %v %v", i, ok, err)
			}
		}
	}
	if m := s.db.Metrics().BlockCache; m.Count == 0 {
		t.Errorf("the block cache holds no blocks after %d look-ups: pebble's memtable reservations leave it no room", 200)
	}
}
