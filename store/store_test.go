package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestOpenCreatesPrivateDirs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "node")
	s := openT(t, dir, Options{})
	closeT(t, s)

	if want := filepath.Join(dir, DirName); s.Path() != want {
		t.Errorf("Path() = %q, want %q", s.Path(), want)
	}
	for _, path := range []string{dir, s.Path()} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); !fi.IsDir() || got&^0o700 != 0 {
			t.Errorf("%s mode %v, want a directory of at most 0700", path, fi.Mode())
		}
	}
	if _, err := os.Stat(s.Path() + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary directory left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old layout's file was made: %v", err)
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
	// Another Open holds the temporary directory while it creates the store
	// (here through pebble's lock alone; lock_test.go has the other
	// process).
	dir := t.TempDir()
	tmp := filepath.Join(dir, DirName+".new")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := pebble.LockDirectory(tmp, vfs.Default)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Open: %v, want ErrLocked", err)
	}
	if want := "store: " + filepath.Join(dir, DirName) + " is in use by another process"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

func TestOpenSameDirByAnotherPath(t *testing.T) {
	// Pebble keeps its own locks in the process by path; the store's must
	// see through a symlink.
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	closeT(t, s)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(link, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Open through a symlink: %v, want ErrLocked", err)
	}
	commitT(t, s, func(b *Batch) { b.PutOutgoing(outgoing(1)) })
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

func TestOpenTreatsEmptyDirAsNew(t *testing.T) {
	for name, prepare := range map[string]func(t *testing.T, path string){
		"empty directory": func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		},
		"only a LOCK file": func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(path, "LOCK"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"empty file of the old layout": func(t *testing.T, path string) {
			if err := os.WriteFile(filepath.Join(filepath.Dir(path), FileName), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			prepare(t, filepath.Join(dir, DirName))
			s := openT(t, dir, Options{})
			closeT(t, s)
			commitT(t, s, func(b *Batch) { b.PutOutgoing(outgoing(1)) })
			if got := loadT(t, s).Outgoing; len(got) != 1 {
				t.Errorf("%d records, want 1", len(got))
			}
		})
	}
}

// TestOpenRefusesLinkToNothing: a store directory that is a symbolic link
// to something missing (a disk not mounted) is refused, not replaced by a
// new, empty store that would hide the real one once the disk is back.
func TestOpenRefusesLinkToNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DirName)
	target := filepath.Join(dir, "unmounted", DirName)
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err == nil {
		s.Close()
		t.Fatal("opened a store through a link to nothing")
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), target) {
		t.Fatalf("error %v: want one naming %s, wrapping fs.ErrNotExist", err, target)
	}
	if got, err := os.Readlink(path); err != nil || got != target {
		t.Fatalf("the link is now %q (%v)", got, err)
	}
}

func TestOpenReplacesLeftoverTemporaryDir(t *testing.T) {
	for name, prepare := range map[string]func(t *testing.T, tmp string){
		// A creation that crashed after pebble made its files, before the
		// meta was written.
		"pebble without meta": func(t *testing.T, tmp string) {
			db, err := pebble.Open(tmp, &pebble.Options{Logger: quietLogger{}})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		},
		"half written files": func(t *testing.T, tmp string) {
			if err := os.MkdirAll(tmp, 0o700); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"MANIFEST-000001", "000002.log", "OPTIONS-000003"} {
				if err := os.WriteFile(filepath.Join(tmp, f), []byte("half written"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		},
		"a file": func(t *testing.T, tmp string) {
			if err := os.WriteFile(tmp, []byte("half written"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			tmp := filepath.Join(dir, DirName+".new")
			prepare(t, tmp)
			s := openT(t, dir, Options{})
			closeT(t, s)
			if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("leftover still there: %v", err)
			}
			commitT(t, s, func(b *Batch) { b.PutOutgoing(outgoing(1)) })
		})
	}
}

func TestOpenRefusesStoreOfOldLayout(t *testing.T) {
	// A data directory of the bbolt release: starting empty beside it would
	// silently drop its exchanges.
	dir := t.TempDir()
	old := filepath.Join(dir, FileName)
	if err := os.WriteFile(old, []byte("a bbolt file"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), old) {
		t.Errorf("message %q does not name %s", err, old)
	}
	if _, err := os.Stat(filepath.Join(dir, DirName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a store was made beside the old file: %v", err)
	}
	// Once a store exists, the old file no longer matters.
	if err := os.Rename(old, old+".moved"); err != nil {
		t.Fatal(err)
	}
	s := openT(t, dir, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(old+".moved", old); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Options{})
	closeT(t, s)
}

func TestIncomingLookup(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	answered := incoming("peer", 5)
	answered.State, answered.Payload, answered.Reply = InAnswered, nil, []byte("the reply")
	commitT(t, s, func(b *Batch) {
		b.PutIncoming(answered)
		b.PutIncoming(incoming("pee", 5)) // a prefix of the peer
		b.PutIncoming(incoming("peer", 6))
	})
	got, ok, err := s.Incoming("peer", 5)
	if err != nil || !ok || !reflect.DeepEqual(got, answered) {
		t.Errorf("Incoming(peer, 5) = %+v, %v, %v; want %+v", got, ok, err, answered)
	}
	for _, c := range []struct {
		peer string
		id   uint64
	}{{"peer", 7}, {"pe", 5}, {"", 5}, {strings.Repeat("p", 300), 5}} {
		if got, ok, err := s.Incoming(c.peer, c.id); err != nil || ok {
			t.Errorf("Incoming(%q, %d) = %+v, %v, %v; want none", c.peer, c.id, got, ok, err)
		}
	}
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
	if _, err := s.OutgoingList(); !errors.Is(err, ErrClosed) {
		t.Errorf("OutgoingList after Close: %v, want ErrClosed", err)
	}
	if _, err := s.DeadLetters(); !errors.Is(err, ErrClosed) {
		t.Errorf("DeadLetters after Close: %v, want ErrClosed", err)
	}
	if _, _, err := s.Incoming("p", 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Incoming after Close: %v, want ErrClosed", err)
	}
}

func TestPebbleLogsToTheLogger(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	s := openT(t, t.TempDir(), Options{Logger: zap.New(core)})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := logs.FilterLoggerName("pebble").Len(); n == 0 {
		t.Errorf("no pebble lines among %d log entries", logs.Len())
	}
	for _, e := range logs.FilterLoggerName("pebble").All() {
		if e.Level > zap.DebugLevel {
			t.Errorf("pebble said %q at %v on a healthy store", e.Message, e.Level)
		}
	}
}

// TestPebbleFatalFailsLaterCommits: pebble's Logger.Fatalf (a WAL it cannot
// write, say) does not return; the store turns it into an error, and its
// commits and reads fail from then on rather than trust pebble. (Reads
// showed the records of the commit that had failed, which pebble had put
// in its memtable.)
func TestPebbleFatalFailsLaterCommits(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	s := openT(t, t.TempDir(), Options{Logger: zap.New(core)})
	closeT(t, s)
	commitT(t, s, func(b *Batch) { b.PutOutgoing(outgoing(1)) })
	if s.Err() != nil {
		t.Fatalf("Err of a working store: %v", s.Err())
	}
	select {
	case <-s.Failed():
		t.Fatal("Failed closed on a working store")
	default:
	}
	err := func() (err error) {
		defer recoverPebble(s.path, &err)
		lg := &pebbleLogger{log: s.log, fatal: s.fail}
		lg.Fatalf("pebble: fatal commit error: %v", "no space left on device")
		return nil
	}()
	if err == nil || errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("recovered %v, want the fatal error (ErrFailed), not ErrCorrupt", err)
	}
	// A process learns of it at once, not at its next commit.
	select {
	case <-s.Failed():
	default:
		t.Fatal("Failed not closed after a fatal error")
	}
	if err := s.Err(); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), s.path) {
		t.Errorf("Err after a fatal error: %v", err)
	}
	if logs.FilterMessageSnippet("no space left").Len() == 0 {
		t.Error("the fatal error was not logged")
	}
	var b Batch
	b.PutOutgoing(outgoing(2))
	if err := s.Commit(&b); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("Commit after a fatal error: %v", err)
	}
	for name, read := range map[string]func() error{
		"Load":         func() error { _, err := s.Load(); return err },
		"Count":        func() error { _, err := s.Count(); return err },
		"Outgoing":     func() error { _, _, err := s.Outgoing(1); return err },
		"OutgoingList": func() error { _, err := s.OutgoingList(); return err },
		"EachOutgoing": func() error { return s.EachOutgoing(t.Context(), func(Outgoing) error { return nil }) },
		"Incoming":     func() error { _, _, err := s.Incoming("p", 1); return err },
		"DeadLetter":   func() error { _, _, err := s.DeadLetter(1); return err },
		"DeadLetters":  func() error { _, err := s.DeadLetters(); return err },
		"EachDeadLetterStamp": func() error {
			return s.EachDeadLetterStamp(t.Context(), func(Stamp) error { return nil })
		},
	} {
		if err := read(); err == nil || !strings.Contains(err.Error(), "no space left") || !strings.Contains(err.Error(), s.Path()) {
			t.Errorf("%s after a fatal error: %v, want the fatal error, naming the store", name, err)
		}
	}
}

// AddIncoming finds a record that has left the memtable for the last level
// of the tree, where its look-up goes through the tables' bloom filters.
func TestAddIncomingSeesRecordsInTables(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	answered := incoming("peer", 5)
	answered.Kind, answered.State, answered.Payload, answered.Reply = KindRequest, InAnswered, nil, []byte("reply")
	commitT(t, s, func(b *Batch) { b.AddIncoming(answered) })
	if err := s.db.Compact(t.Context(), []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	if m := s.db.Metrics(); m.Levels[6].TablesCount == 0 {
		t.Fatalf("no table in the last level after a compaction: %s", m)
	}
	resent := incoming("peer", 5)
	resent.Kind = KindRequest
	commitT(t, s, func(b *Batch) { b.AddIncoming(resent) })
	if got := loadT(t, s).Incoming; !reflect.DeepEqual(got, []Incoming{answered}) {
		t.Fatalf("AddIncoming overwrote a record in a table: %+v", got)
	}
}
