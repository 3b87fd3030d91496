package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// unflushedStore makes a store in a new directory with n outbox records of
// 10 kB and a dead letter, only in its write-ahead log (pebble's Close does
// not flush the memtable), as a node's is after it stops: the next
// read-write open writes them into an sstable before it returns.
func unflushedStore(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	commitT(t, s, func(b *Batch) { b.PutDeadLetter(deadLetter(1000)) })
	for id := uint64(1); id <= uint64(n); id++ {
		commitT(t, s, func(b *Batch) {
			o := outgoing(id)
			o.Payload = bytes.Repeat([]byte{byte(id)}, 10_000)
			b.PutOutgoing(o)
		})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// dirState is what a store directory holds: names, sizes and modification
// times.
func dirState(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, DirName))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %d %s", e.Name(), fi.Size(), fi.ModTime()))
	}
	return out
}

func withoutLock(names []string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return strings.HasPrefix(n, "LOCK ") })
}

// noSpaceForTables fails every sync of an sstable with ENOSPC while on, and
// signals the failures on failures. (Not its writes: pebble v2.1.7 leaks
// the file of a flush whose write fails, and its disk health goroutine.)
func noSpaceForTables(on *atomic.Bool, failures chan<- struct{}) func(vfs.FS) vfs.FS {
	return func(fs vfs.FS) vfs.FS {
		return errorfs.Wrap(fs, errorfs.InjectorFunc(func(op errorfs.Op) error {
			switch op.Kind {
			case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			default:
				return nil
			}
			if !on.Load() || !strings.HasSuffix(op.Path, ".sst") {
				return nil
			}
			select {
			case failures <- struct{}{}:
			default:
			}
			return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
		}))
	}
}

// Opening a store whose write-ahead log holds records on a file system
// without the room to write them into an sstable fails at once, saying so,
// and writes nothing. (Open waited forever for pebble's flush, which failed
// and was tried again thousands of times a second, each logged.)
func TestOpenWithoutRoomFails(t *testing.T) {
	dir := unflushedStore(t, 20) // 200 kB of records
	before := dirState(t, dir)
	core, logs := observer.New(zap.DebugLevel)
	const free = 100_000
	_, err := Open(dir, Options{Logger: zap.New(core), diskFree: func(string) (uint64, error) { return free, nil }})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Open on a full disk: %v, want ENOSPC", err)
	}
	for _, want := range []string{filepath.Join(dir, DirName), "write-ahead log", "100000 free"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// Its lock, pebble's, truncates the LOCK file, changing its time.
	if after := dirState(t, dir); !slices.Equal(withoutLock(after), withoutLock(before)) {
		t.Errorf("the failed Open changed the store:\nbefore %q\nafter  %q", before, after)
	}
	if n := logs.FilterLevelExact(zap.ErrorLevel).Len(); n != 0 {
		t.Errorf("%d error lines logged: %v", n, logs.FilterLevelExact(zap.ErrorLevel).All()[0].Message)
	}
	// With room, it opens, records and all.
	s := openT(t, dir, Options{diskFree: func(string) (uint64, error) { return 1 << 30, nil }})
	closeT(t, s)
	if got := len(loadT(t, s).Outgoing); got != 20 {
		t.Fatalf("%d records, want 20", got)
	}
}

// A flush that fails during Open all the same (the disk filled after the
// check) fails Open with its error instead of waiting for pebble's retries;
// the open it abandons waits for room, logs its failures rate-limited, and
// lets go of the store once it has finished.
func TestOpenFailsWhenItsFlushFails(t *testing.T) {
	var abandoned sync.WaitGroup
	dir := unflushedStore(t, 20)
	var full atomic.Bool
	full.Store(true)
	failures := make(chan struct{}, 1)
	core, logs := observer.New(zap.DebugLevel)
	opts := Options{Logger: zap.New(core), wrapFS: noSpaceForTables(&full, failures),
		diskFree:       func(string) (uint64, error) { return 1 << 30, nil },
		abandonedPause: time.Millisecond, abandoned: &abandoned}
	_, err := Open(dir, opts)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), filepath.Join(dir, DirName)) {
		t.Fatalf("Open whose flush fails: %v, want ENOSPC naming the store", err)
	}
	// The abandoned open tries again, and keeps the store meanwhile.
	for range 20 {
		recv(t, failures, "a failed flush")
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Open while the abandoned open runs: %v, want ErrLocked", err)
	}
	full.Store(false)
	abandoned.Wait()
	if n := logs.FilterMessage("pebble background error").Len(); n != 1 {
		t.Errorf("%d lines of pebble background errors for 20 failures and more, want 1 (rate-limited)", n)
	}
	if n := logs.FilterMessage("pebble error repeated").Len(); n != 1 {
		t.Errorf("%d lines counting the repeats, want 1", n)
	}
	s := openT(t, dir, Options{})
	closeT(t, s)
	if got := len(loadT(t, s).Outgoing); got != 20 {
		t.Fatalf("%d records, want 20", got)
	}
}

// A read-only open writes nothing, even with records to replay, reads all
// of them, refuses commits, and works where writes fail.
func TestReadOnlyWritesNothing(t *testing.T) {
	dir := unflushedStore(t, 5)
	before := dirState(t, dir)
	var full atomic.Bool
	full.Store(true)
	s, err := Open(dir, Options{ReadOnly: true, wrapFS: noSpaceForTables(&full, make(chan struct{}, 1)),
		diskFree: func(string) (uint64, error) { return 0, nil }})
	if err != nil {
		t.Fatal(err)
	}
	st := loadT(t, s)
	if len(st.Outgoing) != 5 || len(st.DeadLetters) != 1 {
		t.Fatalf("read-only: %d outgoing, %d dead letters; want 5 and 1", len(st.Outgoing), len(st.DeadLetters))
	}
	var b Batch
	b.DeleteOutgoing(1)
	if err := s.Commit(&b); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Commit on a read-only store: %v, want ErrReadOnly", err)
	}
	if err := s.Commit(nil); err != nil {
		t.Errorf("empty Commit on a read-only store: %v", err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Errorf("Open beside a read-only one: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if after := dirState(t, dir); !slices.Equal(after, before) {
		t.Errorf("the read-only store changed the directory:\nbefore %q\nafter  %q", before, after)
	}
	// No store: an error, and nothing created.
	empty := filepath.Join(t.TempDir(), "none")
	if _, err := Open(empty, Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only Open of no store: %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(empty); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only Open of no store created %s (%v)", empty, err)
	}
}

// A flush that fails for want of disk once the store is open fails the
// store for good (Err, Failed), at once: pebble would retry it without
// end while its log writes went on (its logs are allocated ahead), until
// every commit stalled, with the store looking healthy. Once there is
// room again the stalled commit goes through, and Close returns.
func TestFlushWithoutRoomFailsTheStore(t *testing.T) {
	var full atomic.Bool
	failures := make(chan struct{}, 1)
	s, err := Open(t.TempDir(), Options{MaxBytes: 16 << 20, wrapFS: noSpaceForTables(&full, failures),
		abandonedPause: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	full.Store(true)
	stopped := make(chan error, 1)
	go func() { // commits until one fails; one may stall until there is room
		rnd := rand.NewChaCha8([32]byte{5})
		for id := uint64(1); ; id++ {
			o := outgoing(id)
			o.Payload = make([]byte, 50_000) // random: compression cannot shrink it
			_, _ = rnd.Read(o.Payload)
			var b Batch
			b.PutOutgoing(o)
			if err := s.Commit(&b); err != nil {
				stopped <- err
				return
			}
		}
	}()
	select {
	case <-s.Failed():
	case <-time.After(30 * time.Second):
		t.Fatal("the store did not fail while its flushes failed for want of room")
	}
	if err := s.Err(); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("Err: %v, want ErrFailed saying no space is left", err)
	}
	full.Store(false) // room again: a stalled commit goes through
	if err := recv(t, stopped, "the commits' end"); !errors.Is(err, ErrFailed) {
		t.Errorf("the commits ended with %v, want ErrFailed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
