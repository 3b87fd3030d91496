package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestOpenCreatesPrivateDirAndFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "node")
	s := openT(t, dir, Options{})
	closeT(t, s)

	if want := filepath.Join(dir, FileName); s.Path() != want {
		t.Errorf("Path() = %q, want %q", s.Path(), want)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, s.Path(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got&^want != 0 {
			t.Errorf("%s mode %v, want at most %v", path, got, want)
		}
	}
	if _, err := os.Stat(s.Path() + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	if st := loadT(t, s); st.Outgoing != nil || st.Incoming != nil || st.DeadLetters != nil {
		t.Errorf("new store not empty: %+v", st)
	}
}

func TestRoundTripThroughReopen(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})

	outs := []Outgoing{outgoing(1), outgoing(2), outgoing(300)}
	outs[1].Kind, outs[1].Addr, outs[1].Tag, outs[1].Payload = KindMessage, "", "", nil
	ins := []Incoming{incoming("peerA", 7), incoming("peerB", 1)}
	ins[1].Kind, ins[1].State, ins[1].Payload, ins[1].Reply = KindRequest, InAnswered, nil, []byte("the reply")
	dls := []DeadLetter{deadLetter(9), deadLetter(10)}
	dls[1].Error = ""

	commitT(t, s, func(b *Batch) {
		for _, o := range outs {
			b.PutOutgoing(o)
		}
		for _, in := range ins {
			b.PutIncoming(in)
		}
		for _, d := range dls {
			b.PutDeadLetter(d)
		}
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openT(t, dir, Options{})
	closeT(t, s)
	want := State{Outgoing: outs, Incoming: ins, DeadLetters: dls}
	if got := loadT(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("Load after reopen:\n got %+v\nwant %+v", got, want)
	}
	if got, err := s.OutgoingList(); err != nil || !reflect.DeepEqual(got, outs) {
		t.Errorf("OutgoingList = %+v, %v; want %+v", got, err, outs)
	}
	if got, err := s.DeadLetters(); err != nil || !reflect.DeepEqual(got, dls) {
		t.Errorf("DeadLetters = %+v, %v; want %+v", got, err, dls)
	}
}

func TestDeletes(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	commitT(t, s, func(b *Batch) {
		b.PutOutgoing(outgoing(1))
		b.PutOutgoing(outgoing(2))
		b.PutIncoming(incoming("p", 1))
		b.PutIncoming(incoming("p", 2))
		b.PutDeadLetter(deadLetter(1))
		b.PutDeadLetter(deadLetter(2))
	})
	commitT(t, s, func(b *Batch) {
		b.DeleteOutgoing(1)
		b.DeleteIncoming("p", 2)
		b.DeleteDeadLetter(2)
		b.DeleteOutgoing(99) // absent: not an error
	})
	want := State{
		Outgoing:    []Outgoing{outgoing(2)},
		Incoming:    []Incoming{incoming("p", 1)},
		DeadLetters: []DeadLetter{deadLetter(1)},
	}
	if got := loadT(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("after deletes:\n got %+v\nwant %+v", got, want)
	}
}

func TestBatchAppliesInOrder(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	second := outgoing(1)
	second.Attempts = 5
	commitT(t, s, func(b *Batch) {
		b.PutOutgoing(outgoing(1))
		b.PutOutgoing(second) // a later write to the same key wins
		b.PutOutgoing(outgoing(2))
		b.DeleteOutgoing(2) // a delete after a put in one batch deletes it
	})
	if got := loadT(t, s).Outgoing; !reflect.DeepEqual(got, []Outgoing{second}) {
		t.Errorf("got %+v, want only the second write of 1", got)
	}
}

func TestAddIncomingKeepsExistingPutReplaces(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)

	answered := incoming("peer", 5)
	answered.Kind, answered.State, answered.Payload, answered.Reply = KindRequest, InAnswered, nil, []byte("reply")
	commitT(t, s, func(b *Batch) { b.AddIncoming(answered) })

	resent := incoming("peer", 5) // the same request arriving again
	resent.Kind = KindRequest
	commitT(t, s, func(b *Batch) { b.AddIncoming(resent) })
	if got := loadT(t, s).Incoming; !reflect.DeepEqual(got, []Incoming{answered}) {
		t.Fatalf("AddIncoming overwrote an answered record: %+v", got)
	}

	// Two adds of one key in one batch, and in one group: the first stays.
	other := incoming("peer", 6)
	later := other
	later.Payload = []byte("later")
	commitT(t, s, func(b *Batch) {
		b.AddIncoming(other)
		b.AddIncoming(later)
	})
	third, thirdLater := incoming("peer", 7), incoming("peer", 7)
	thirdLater.Payload = []byte("later")
	release := holdCommitter(s)
	errs := make(chan error, 2)
	for _, in := range []Incoming{third, thirdLater} {
		var b Batch
		b.AddIncoming(in)
		s.CommitAsync(&b, func(err error) { errs <- err })
	}
	release()
	for range 2 {
		if err := recv(t, errs, "commit"); err != nil {
			t.Fatal(err)
		}
	}

	handled := answered
	handled.State, handled.Reply = InHandled, nil
	commitT(t, s, func(b *Batch) { b.PutIncoming(handled) })
	want := []Incoming{handled, other, third}
	if got := loadT(t, s).Incoming; !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestLoadOrdersIncomingByPeerThenID(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	// Keys sort by peer length first; Load must sort by peer, then ID.
	commitT(t, s, func(b *Batch) {
		b.PutIncoming(incoming("b", 1))
		b.PutIncoming(incoming("aa", 2))
		b.PutIncoming(incoming("aa", 1))
		b.PutIncoming(incoming("a", 300))
		b.PutIncoming(incoming("a", 2))
	})
	var got []string
	for _, in := range loadT(t, s).Incoming {
		got = append(got, fmt.Sprintf("%s/%d", in.Peer, in.ID))
	}
	if want := []string{"a/2", "a/300", "aa/1", "aa/2", "b/1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	want := "store: " + s.Path() + " is in use by another process"
	if err.Error() != want {
		t.Errorf("message %q, want %q", err.Error(), want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Options{})
	closeT(t, s)
}

func TestOpenLockedWhileCreating(t *testing.T) {
	// Another process holds the temporary file while it creates the store.
	dir := t.TempDir()
	tmp, err := bolt.Open(filepath.Join(dir, FileName+".new"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Open: %v, want ErrLocked", err)
	}
}

func TestConcurrentOpensOfNewDir(t *testing.T) {
	// Racing creators: each either gets the store or ErrLocked, never a
	// corrupt or half-made file.
	dir := filepath.Join(t.TempDir(), "new")
	const n = 8
	results := make(chan error, n)
	stores := make(chan *Store, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			s, err := Open(dir, Options{})
			if err == nil {
				stores <- s
			}
			results <- err
		})
	}
	wg.Wait()
	close(results)
	close(stores)
	opened := 0
	for err := range results {
		switch {
		case err == nil:
			opened++
		case !errors.Is(err, ErrLocked):
			t.Errorf("Open: %v, want success or ErrLocked", err)
		}
	}
	if opened == 0 {
		t.Error("no Open succeeded")
	}
	for s := range stores {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}
	s := openT(t, dir, Options{})
	closeT(t, s)
	loadT(t, s)
}

func TestOpenTreatsEmptyFileAsNew(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := openT(t, dir, Options{})
	closeT(t, s)
	commitT(t, s, func(b *Batch) { b.PutOutgoing(outgoing(1)) })
}

func TestOpenReplacesLeftoverTemporaryFile(t *testing.T) {
	// A creation that crashed half way left a damaged temporary file.
	dir := t.TempDir()
	tmp := filepath.Join(dir, FileName+".new")
	if err := os.WriteFile(tmp, []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openT(t, dir, Options{})
	closeT(t, s)
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover still there: %v", err)
	}
	commitT(t, s, func(b *Batch) { b.PutOutgoing(outgoing(1)) })
}

func TestClosed(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	var b Batch
	b.PutOutgoing(outgoing(1))
	if err := s.Commit(&b); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Close: %v, want ErrClosed", err)
	}
	called := false
	s.CommitAsync(&b, func(err error) {
		called = true
		if !errors.Is(err, ErrClosed) {
			t.Errorf("CommitAsync after Close: %v, want ErrClosed", err)
		}
	})
	if !called {
		t.Error("CommitAsync after Close did not call done")
	}
	if _, err := s.Load(); !errors.Is(err, ErrClosed) {
		t.Errorf("Load after Close: %v, want ErrClosed", err)
	}
}
