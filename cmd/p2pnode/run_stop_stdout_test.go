package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// The stop after a store failure is bounded also when stdout takes no
// line (a pipe nobody reads): the run loop's write of an event blocks,
// holding the printer, and the stop's lines (the failure's error event,
// the last line that says the node exits) waited for it without bound, so
// the node never exited. It exits 1 now, stderr saying why and what
// stdout missed.
func TestStoreFailureStopIsBoundedWithStdoutStalled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, _ := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idB)
	var st *stalledStore
	stallAtCleanup(t, &st)
	hooks := runHooks{
		store:      func(s *store.Store) storeLife { st = newStalledStore(s); return st },
		failedStop: 2 * time.Second,
	}

	// From stall on, a write blocks until the test ends, as one into a
	// full pipe nobody reads; blocked tells that the first one came.
	var (
		blockOnce, releaseOnce     sync.Once
		stalled, blocked, released = make(chan struct{}), make(chan struct{}), make(chan struct{})
	)
	out := new(watchedOut)
	out.onLine = func(string) {
		select {
		case <-stalled:
		default:
			return
		}
		blockOnce.Do(func() { close(blocked) })
		<-released
	}
	// Registered after stallAtCleanup's, so run first: the writes go on,
	// then the stop ends and the store closes.
	t.Cleanup(func() { releaseOnce.Do(func() { close(released) }) })
	errOut, code, stdin := runInProcess(t, hooks, out, "run", "--json", "--key", key, "--allowlist", list,
		"--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir", filepath.Join(dir, "a"))

	close(stalled)
	// A bad line: the run loop prints its error event, and blocks there.
	if _, err := fmt.Fprintln(stdin, "not a command"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-blocked:
	case <-time.After(waitTimeout):
		t.Fatalf("the run loop wrote no event for a bad stdin line; stderr:\n%s", errOut.String())
	}
	st.fail()
	awaitExit(t, code, errOut, 1, "the node did not exit after its store's failure, its stdout stalled")
	e := errOut.String()
	for _, want := range []string{"store failed: stopping", "stop overran", "stdout did not take the stop's last line",
		"p2pnode: store: failed", "not closed"} {
		if !strings.Contains(e, want) {
			t.Errorf("stderr does not say %q:\n%s", want, e)
		}
	}
}

// blockingWriter blocks every write until released, as a full pipe nobody
// reads does: entered says a write came, wrote what it wrote.
type blockingWriter struct {
	entered  chan struct{}
	released chan struct{}
	wrote    chan string
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.entered <- struct{}{}
	<-w.released
	w.wrote <- string(p)
	return len(p), nil
}

// The last line does not wait for a write stuck on stdout without bound,
// and seals the printer all the same: a line waiting behind the stuck
// write is not written after the last one.
func TestSealLastWithStdoutStalled(t *testing.T) {
	w := &blockingWriter{entered: make(chan struct{}, 4), released: make(chan struct{}), wrote: make(chan string, 4)}
	p := &printer{w: w, asJSON: true}
	line := func(s string) p2p.Error { return p2p.Error{Err: errors.New(s)} }
	first := make(chan error, 1)
	go func() { first <- p.print(line("first")) }()
	<-w.entered // first holds the printer, its write stuck
	if err := p.sealLast(line("last"), time.Now().Add(50*time.Millisecond)); !errors.Is(err, errStalled) {
		t.Fatalf("sealLast behind a stuck write: %v, want errStalled", err)
	}
	if err := p.printBy(line("after"), time.Now().Add(50*time.Millisecond)); !errors.Is(err, errStalled) {
		t.Fatalf("a line after the seal, behind the stuck write: %v, want errStalled", err)
	}
	close(w.released) // the reader comes back
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := p.print(line("later")); !errors.Is(err, errSealed) {
		t.Fatalf("a line after the seal: %v, want errSealed", err)
	}
	// The last line goes out once stdout takes lines again (if the process
	// is still there): after the first, and nothing after it.
	var got []string
	for len(got) < 2 {
		select {
		case l := <-w.wrote:
			got = append(got, l)
		case <-time.After(waitTimeout):
			t.Fatalf("stdout got %q, want the first line and the last", got)
		}
	}
	if !strings.Contains(got[0], "first") || !strings.Contains(got[1], "last") {
		t.Fatalf("stdout got %q, want the first line, then the last", got)
	}
}
