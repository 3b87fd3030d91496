package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// watchedOut is the stdout of a node run in this process: it keeps what
// was written, and tells waiters when a line holding their text comes.
// onLine, if set, sees each line as it is written, before the write
// returns (so before the run loop goes on).
type watchedOut struct {
	mu      sync.Mutex
	b       bytes.Buffer
	waiters []lineWaiter
	onLine  func(string)
}

type lineWaiter struct {
	text string
	ch   chan string
}

func (w *watchedOut) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	line := string(p)
	if w.onLine != nil {
		w.onLine(line)
	}
	kept := w.waiters[:0]
	for _, lw := range w.waiters {
		if strings.Contains(line, lw.text) {
			lw.ch <- line
			continue
		}
		kept = append(kept, lw)
	}
	w.waiters = kept
	return len(p), nil
}

// await returns the first line, written before or after the call, that
// holds text.
func (w *watchedOut) await(t *testing.T, text string, code <-chan int, errOut *lockedBuf) string {
	t.Helper()
	ch := make(chan string, 1)
	w.mu.Lock()
	for _, l := range strings.SplitAfter(w.b.String(), "\n") {
		if strings.Contains(l, text) {
			w.mu.Unlock()
			return l
		}
	}
	w.waiters = append(w.waiters, lineWaiter{text, ch})
	w.mu.Unlock()
	select {
	case l := <-ch:
		return l
	case c := <-code:
		t.Fatalf("the node exited %d before printing %q; stdout:\n%s\nstderr:\n%s", c, text, w.String(), errOut.String())
	case <-time.After(waitTimeout):
		t.Fatalf("no line with %q within %s; stdout:\n%s\nstderr:\n%s", text, waitTimeout, w.String(), errOut.String())
	}
	return ""
}

func (w *watchedOut) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// stalledStore stands for a store that failed while a commit is stalled
// behind pebble's failed flush: Err and Failed say it failed once fail is
// called, and Close waits for release (there is room again) before it
// closes the store itself.
type stalledStore struct {
	s        *store.Store
	failed   chan struct{}
	released chan struct{}
	closed   chan struct{} // closed once Close returned
	fail     func()
	release  func()
}

func newStalledStore(s *store.Store) *stalledStore {
	st := &stalledStore{s: s, failed: make(chan struct{}), released: make(chan struct{}), closed: make(chan struct{})}
	var failOnce, releaseOnce sync.Once
	st.fail = func() { failOnce.Do(func() { close(st.failed) }) }
	st.release = func() { releaseOnce.Do(func() { close(st.released) }) }
	return st
}

func (st *stalledStore) Err() error {
	select {
	case <-st.failed:
		return fmt.Errorf("%w: %s: test: flush failed: no space left on device", store.ErrFailed, st.s.Path())
	default:
		return nil
	}
}

func (st *stalledStore) Failed() <-chan struct{} { return st.failed }

func (st *stalledStore) Close() error {
	defer close(st.closed)
	<-st.released
	return st.s.Close()
}

// runInProcess starts "p2pnode run" with args in this process, with hooks,
// and waits for its listening event. It returns the node's stdout, stderr
// and exit status channel, and the stdin writer (closed at cleanup).
func runInProcess(t *testing.T, hooks runHooks, out *watchedOut, args ...string) (errOut *lockedBuf, code chan int, stdin io.WriteCloser) {
	t.Helper()
	errOut = new(lockedBuf)
	inR, inW := io.Pipe()
	t.Cleanup(func() { inW.Close() })
	code = make(chan int, 1)
	a := &app{stdio: stdio{in: inR, out: out, err: errOut}, hooks: hooks}
	go func() { code <- executeApp(a, args) }()
	out.await(t, `"event":"listening"`, code, errOut)
	return errOut, code, inW
}

// The stalled store's Close waits for the test: released at cleanup, and
// then the store is closed before the test's directory is removed.
func stallAtCleanup(t *testing.T, st **stalledStore) {
	t.Cleanup(func() {
		if *st == nil {
			return
		}
		(*st).release()
		select {
		case <-(*st).closed:
		case <-time.After(waitTimeout):
			t.Errorf("the store was not closed after its release")
		}
	})
}

// A store that failed for good stops the node with exit status 1; the stop
// waited without bound for a store whose commit is stalled behind pebble's
// failed flush (its Close returns only once the disk has room), until a
// supervisor's stop timeout killed the process. The stop is bounded now,
// and the node says it exits with the store not closed.
func TestStoreFailureStopIsBounded(t *testing.T) {
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
	out := new(watchedOut)
	errOut, code, _ := runInProcess(t, hooks, out, "run", "--json", "--key", key, "--allowlist", list,
		"--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir", filepath.Join(dir, "a"))

	st.fail()
	out.await(t, "a restart opens it again", code, errOut)
	awaitExit(t, code, errOut, 1, "the node did not exit after its store's failure, while the store's Close waited")
	l := out.await(t, "not closed", code, errOut)
	if !strings.Contains(l, `"event":"error"`) || !strings.Contains(l, "the store not closed") {
		t.Errorf("the event of the stop cut short does not say the store was left unclosed: %s", l)
	}
	if e := errOut.String(); !strings.Contains(e, "p2pnode: store: failed") || !strings.Contains(e, "not closed") {
		t.Errorf("stderr does not end with the store's failure and what was not closed:\n%s", e)
	}
	if strings.Contains(errOut.String(), "store closed") {
		t.Errorf("the log says the store closed, which it did not:\n%s", errOut.String())
	}
}

// /readyz says why a node whose store failed is not ready: "not ready:
// store: failed: ...", from the failure until the process exits (not "node
// stopping", which hides the cause).
func TestReadyzSaysStoreFailed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, _ := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idB)
	var st *stalledStore
	stallAtCleanup(t, &st)
	// A stop as long as the test needs: the store's Close waits for the
	// test, which reads /readyz meanwhile.
	hooks := runHooks{
		store:      func(s *store.Store) storeLife { st = newStalledStore(s); return st },
		failedStop: time.Hour,
	}
	out := new(watchedOut)
	errOut, code, _ := runInProcess(t, hooks, out, "run", "--json", "--key", key, "--allowlist", list,
		"--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir", filepath.Join(dir, "a"), "--metrics-addr", "127.0.0.1:0")
	l := out.await(t, `"event":"listening"`, code, errOut)
	var ev struct{ Metrics string }
	if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Metrics == "" {
		t.Fatalf("listening event without metrics address (%v): %s", err, l)
	}
	readyz := func() (int, string) {
		t.Helper()
		c := http.Client{Timeout: waitTimeout}
		res, err := c.Get("http://" + ev.Metrics + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if c, body := readyz(); c != http.StatusOK {
		t.Fatalf("/readyz before the failure: %d %q", c, body)
	}

	st.fail()
	out.await(t, "a restart opens it again", code, errOut)
	c, body := readyz()
	if c != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready: store: failed") {
		t.Errorf("/readyz after the store failed: %d %q, want 503 \"not ready: store: failed: ...\"", c, body)
	}
	st.release()
	awaitExit(t, code, errOut, 1, "the node did not exit once its store closed")
	if strings.Contains(out.String(), "not closed") {
		t.Errorf("a stop that closed the store says it did not:\n%s", out.String())
	}
}

// fullStore refuses, while full is set, every commit that adds data, as a
// store past its cap does (store.ErrFull); the rest goes to the store.
type fullStore struct {
	handler.Store
	full    atomic.Bool
	refused atomic.Int32
}

func (f *fullStore) Commit(b *store.Batch) error {
	if f.full.Load() && b.Adds() {
		f.refused.Add(1)
		return fmt.Errorf("%w: test: N bytes in use, limit M", store.ErrFull)
	}
	return f.Store.Commit(b)
}

// --auto-reply echo answers a request the store refused the reply of for
// want of room once there is room again: it gave up at once, with an
// error event, and the requester's exchange failed at its reply timeout.
func TestAutoReplyWaitsForRoom(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	portB := tu.LoopbackPort(t)
	listen := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", portB)

	fs := new(fullStore)
	hooks := runHooks{handlerStore: func(s handler.Store) handler.Store { fs.Store = s; return fs }}
	// The store fills as the request is printed: the loop then answers
	// it, and the store refuses the reply.
	out := &watchedOut{onLine: func(l string) {
		if strings.Contains(l, `"event":"request"`) {
			fs.full.Store(true)
		}
	}}
	errOut, code, stdinB := runInProcess(t, hooks, out, "run", "--json", "--key", keyB, "--allowlist", list,
		"--listen", listen, "--data-dir", filepath.Join(dir, "b"), "--auto-reply", "echo")

	a, _ := startNode(t, "a", dir, keyA, list, "--ephemeral")
	a.send(map[string]any{"cmd": "request", "addr": listen + "/p2p/" + idB, "data": "ping", "id": 1})
	l := out.await(t, "store: full", code, errOut)
	if !strings.Contains(l, `"event":"error"`) || !strings.Contains(l, "the reply waits for room") {
		t.Errorf("the event of the reply refused does not say it waits for room: %s", l)
	}
	if fs.refused.Load() == 0 {
		t.Fatal("the store refused nothing")
	}
	fs.full.Store(false)
	a.expect("the reply once B's store had room", match("reply", "from", idB, "id", 1, "data", "ping"))
	a.expect("the exchange's success", match("exchange", "id", 1, "ok", true))
	stopAll(t, a)
	stdinB.Close()
	awaitExit(t, code, errOut, 0, "b did not stop")
	if strings.Contains(out.String(), "not answered") {
		t.Errorf("b gave the reply up:\n%s", out.String())
	}
}

// stallingStore stalls, once stall is set, every commit the handler makes
// until release, as pebble does behind a flush that failed for want of
// room; the stalled commits then fail. entered has a token once one
// stalls. With once, only the first stalls.
type stallingStore struct {
	handler.Store
	stall atomic.Bool
	// once: only the first commit after stall is set stalls (and fails);
	// the rest go to the store.
	once     bool
	stalled  atomic.Bool
	entered  chan struct{}
	released chan struct{}
	release  func()
}

func newStallingStore() *stallingStore {
	s := &stallingStore{entered: make(chan struct{}, 1), released: make(chan struct{})}
	var once sync.Once
	s.release = func() { once.Do(func() { close(s.released) }) }
	return s
}

func (s *stallingStore) Commit(b *store.Batch) error {
	if !s.stall.Load() || (s.once && !s.stalled.CompareAndSwap(false, true)) {
		return s.Store.Commit(b)
	}
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.released
	return fmt.Errorf("%w: test: stalled, then failed", store.ErrFailed)
}

// The run loop itself may be the one waiting on the stalled commit (here a
// stdin request's): it never sees the failure, and the stop never began.
// The failure is printed all the same, and the process exits 1 on time,
// saying that the node and the store are left unclosed.
func TestStoreFailureStopIsBoundedWithTheLoopStuck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, _ := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idB)
	var st *stalledStore
	stallAtCleanup(t, &st)
	hs := newStallingStore()
	t.Cleanup(hs.release) // before the store's release: the loop goes on, the stop ends
	hooks := runHooks{
		store:        func(s *store.Store) storeLife { st = newStalledStore(s); return st },
		handlerStore: func(s handler.Store) handler.Store { hs.Store = s; return hs },
		failedStop:   2 * time.Second,
	}
	out := new(watchedOut)
	errOut, code, stdin := runInProcess(t, hooks, out, "run", "--json", "--key", key, "--allowlist", list,
		"--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir", filepath.Join(dir, "a"))

	hs.stall.Store(true)
	down := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", tu.LoopbackPort(t), idB)
	if _, err := fmt.Fprintf(stdin, `{"cmd":"request","addr":%q,"data":"x","id":1}`+"\n", down); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hs.entered:
	case <-time.After(waitTimeout):
		t.Fatalf("the request's commit never came; stderr:\n%s", errOut.String())
	}
	st.fail()
	out.await(t, "a restart opens it again", code, errOut)
	awaitExit(t, code, errOut, 1, "the node did not exit after its store's failure, while its loop waited on a commit")
	l := out.await(t, "not closed", code, errOut)
	if !strings.Contains(l, "exiting with the node") || !strings.Contains(l, "and the store not closed") {
		t.Errorf("the event of the stop cut short does not say the node and the store were left unclosed: %s", l)
	}
}

// Once the stop is given up (the "not closed" line), serve goes on until
// the process exits: here the run loop, stuck on a stdin request's commit,
// is released after it, and finds a reply and its exchange's outcome
// waiting. They were printed after the line that says the node exits
// ("ok":true, which a script reading that line as the last word never
// sees) and the outcome acknowledged, so the restart did not print it
// either. Nothing is printed after that line now, nor acknowledged: the
// restart prints the reply and the outcome.
func TestStoreFailureGivenUpStopPrintsNothingAfter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	b, lb := startNode(t, "b", dir, keyB, list, "--ephemeral")
	var st *stalledStore
	stallAtCleanup(t, &st)
	hs := newStallingStore()
	hs.once = true
	t.Cleanup(hs.release)
	hooks := runHooks{
		store:        func(s *store.Store) storeLife { st = newStalledStore(s); return st },
		handlerStore: func(s handler.Store) handler.Store { hs.Store = s; return hs },
		failedStop:   time.Second,
	}
	dataA := filepath.Join(dir, "a")
	out := new(watchedOut)
	errOut, code, stdin := runInProcess(t, hooks, out, "run", "--json", "--key", keyA, "--allowlist", list,
		"--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir", dataA)

	if _, err := fmt.Fprintf(stdin, `{"cmd":"request","addr":%q,"data":"ping","id":1}`+"\n", firstAddr(t, lb)); err != nil {
		t.Fatal(err)
	}
	req := b.expect("the request", match("request", "from", idA, "data", "ping"))[0]
	// A's loop stuck on the commit of a second request.
	hs.stall.Store(true)
	down := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", tu.LoopbackPort(t), idB)
	if _, err := fmt.Fprintf(stdin, `{"cmd":"request","addr":%q,"data":"x","id":2}`+"\n", down); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hs.entered:
	case <-time.After(waitTimeout):
		t.Fatalf("the request's commit never came; stderr:\n%s", errOut.String())
	}
	// The reply reaches A, which stores it and acks it: B's exchange ends
	// OK, and A's reply and outcome wait for its loop.
	b.send(map[string]any{"cmd": "respond", "peer": idA, "exchange": req.Str("exchange"), "data": "pong"})
	b.expect("the reply's ack", match("exchange", "exchange", req.Str("exchange"), "ok", true))

	st.fail()
	awaitExit(t, code, errOut, 1, "the node did not exit")
	// The stop goes on: the loop gets its commit's failure, prints what
	// waited, and stops; the store closes once released.
	hs.release()
	st.release()
	select {
	case <-st.closed:
	case <-time.After(waitTimeout):
		t.Fatalf("the stop given up never ended; stderr:\n%s", errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "not closed") {
		t.Errorf("lines printed after the one that says the stop was given up:\n%s", out.String())
	}

	a2, _ := startNode(t, "a2", dir, keyA, list, "--data-dir", dataA)
	a2.expect("the reply and its exchange's outcome, printed at the restart",
		match("reply", "from", idB, "id", 1, "data", "pong", "redelivered", true),
		match("exchange", "id", 1, "ok", true, "redelivered", true))
	stopAll(t, a2, b)
}

// stuckStoreChildArg, as the test binary's first argument, makes it run
// "p2pnode" with the rest (stuckStoreChild), for a test that signals it.
const stuckStoreChildArg = "-p2pnode-test-stuck-store"

// stuckStoreChild runs p2pnode with args in this process, with the store
// of TestStoreFailureStopIsBoundedWithTheLoopStuck: once the node
// listens, the handler's first commit stalls, and the store fails as it
// does; the stop is given up only after an hour, and the store's Close
// never returns. The parent ends the process.
func stuckStoreChild(args []string) int {
	hs := newStallingStore()
	failed := make(chan storeLife, 1)
	hooks := runHooks{
		store: func(s *store.Store) storeLife {
			st := newStalledStore(s)
			failed <- st
			return st
		},
		handlerStore: func(s handler.Store) handler.Store { hs.Store = s; return hs },
		failedStop:   time.Hour,
	}
	// Owned by the process, which the parent ends.
	go func() {
		<-hs.entered
		(<-failed).(*stalledStore).fail()
	}()
	out := &lineHook{w: os.Stdout, f: func(l string) {
		if strings.Contains(l, `"event":"listening"`) {
			hs.stall.Store(true)
		}
	}}
	return executeApp(&app{stdio: stdio{in: os.Stdin, out: out, err: os.Stderr}, hooks: hooks}, args)
}

// lineHook writes to w, calling f with each line first.
type lineHook struct {
	w io.Writer
	f func(string)
}

func (h *lineHook) Write(p []byte) (int, error) {
	h.f(string(p))
	return h.w.Write(p)
}

// Once the store failed, the stop is decided, and a SIGINT or SIGTERM ends
// the process at once, as docs/operations.md says, also while the run
// loop waits on a commit stalled behind the failure. The signals were
// handed back to their default action only once the loop returned, which
// it does not then: a SIGTERM waited unread until the stop was given up,
// 10 seconds after the failure.
func TestStoreFailureSIGTERMEndsTheStuckStop(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, _ := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idB)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a := startCmd(t, "a", dir, true, exec.Command(self, stuckStoreChildArg, "run", "--json", "--key", key,
		"--allowlist", list, "--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir", filepath.Join(dir, "a")))
	a.expect("listening event", match("listening"))
	down := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", tu.LoopbackPort(t), idB)
	a.send(fmt.Sprintf(`{"cmd":"request","addr":%q,"data":"x","id":1}`, down))
	a.expect("the store's failure", func(e event) bool {
		return e.Str("event") == "error" && strings.Contains(e.Str("error"), "a restart opens it again")
	})
	a.signal(syscall.SIGTERM)
	code, rest := a.wait()
	ws, ok := a.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Fatalf("exit status %d, want killed by SIGTERM; output:\n%s\nstderr:\n%s",
			code, strings.Join(rest, "\n"), a.errOutput())
	}
}

// --auto-reply retries a reply a full store refused until the request's
// deadline, which the handler counts from when it took the request: a
// loop that read the request late counted the reply timeout from its
// first try, so its last retries came after the handler had ended the
// request, and the reply was given up with a generic error ("unknown
// exchange") rather than the documented "not answered".
func TestAutoReplyRetriesUntilTheRequestsDeadline(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	portB := tu.LoopbackPort(t)
	listen := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", portB)

	fs := new(fullStore)
	hooks := runHooks{handlerStore: func(s handler.Store) handler.Store { fs.Store = s; return fs }}
	// The store fills as the request is printed, and the loop is held
	// there for longer than the retries' longest backoff (the slow loop
	// is the case itself, not a wait for something): counted from its
	// first try, the reply timeout ends at least one retry after the
	// handler's.
	const hold = 1200 * time.Millisecond
	out := &watchedOut{onLine: func(l string) {
		if strings.Contains(l, `"event":"request"`) {
			fs.full.Store(true)
			<-time.After(hold)
		}
	}}
	errOut, code, stdinB := runInProcess(t, hooks, out, "run", "--json", "--key", keyB, "--allowlist", list,
		"--listen", listen, "--data-dir", filepath.Join(dir, "b"), "--auto-reply", "echo", "--reply-timeout", "2s")

	a, _ := startNode(t, "a", dir, keyA, list, "--ephemeral")
	a.send(map[string]any{"cmd": "request", "addr": listen + "/p2p/" + idB, "data": "ping", "id": 1})
	out.await(t, "the reply waits for room", code, errOut)
	l := out.await(t, `"role":"responder"`, code, errOut)
	if !strings.Contains(l, `"reason":"reply_timeout"`) {
		t.Fatalf("the request did not end reply_timeout: %s", l)
	}
	out.await(t, "not answered", code, errOut)
	if s := out.String(); strings.Contains(s, "unknown exchange") {
		t.Errorf("a retry came after the handler ended the request:\n%s", s)
	}
	stopAll(t, a)
	stdinB.Close()
	awaitExit(t, code, errOut, 0, "b did not stop")
}

// awaitExit waits for the in-process run's exit status, want, failing with
// why (what did not happen) if none comes within waitTimeout.
func awaitExit(t *testing.T, code <-chan int, errOut fmt.Stringer, want int, why string) {
	t.Helper()
	select {
	case c := <-code:
		if c != want {
			t.Fatalf("exit status %d, want %d; stderr:\n%s", c, want, errOut.String())
		}
	case <-time.After(waitTimeout):
		t.Fatalf("%s within %s; stderr:\n%s", why, waitTimeout, errOut.String())
	}
}
