package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Tests with a second process: the test binary runs again as a helper (the
// os/exec helper-process idiom), told what to do by the environment, and
// reports on its stdout one line per step.

const (
	helperEnv = "STORE_TEST_HELPER" // the helper's mode
	helperDir = "STORE_TEST_DIR"    // the data directory
	helperN   = "STORE_TEST_N"      // how many records to report committed
)

// runHelper is the helper process's main. Modes:
//
//	hold     open the store, print "ready", close it when stdin closes
//	holdtmp  lock dir/store.new as a creating Open does, print "ready",
//	         unlock when stdin closes
//	commit   commit records 1..N from 8 writers, printing "committed ID"
//	         after each Commit returns, then "done", then go on committing
//	         records past N until killed
func runHelper(mode string) int {
	dir := os.Getenv(helperDir)
	fail := func(err error) int {
		fmt.Printf("error %v\n", err)
		return 1
	}
	switch mode {
	case "hold":
		s, err := Open(dir, Options{})
		if err != nil {
			return fail(err)
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		if err := s.Close(); err != nil {
			return fail(err)
		}
		return 0
	case "holdtmp":
		tmp := filepath.Join(dir, DirName+".new")
		if err := os.MkdirAll(tmp, 0o700); err != nil {
			return fail(err)
		}
		l, err := pebble.LockDirectory(tmp, vfs.Default)
		if err != nil {
			return fail(err)
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = l.Close()
		return 0
	case "commit":
		n, err := strconv.ParseUint(os.Getenv(helperN), 10, 64)
		if err != nil {
			return fail(err)
		}
		s, err := Open(dir, Options{})
		if err != nil {
			return fail(err)
		}
		var mu sync.Mutex // one line at a time on stdout
		var next, reported uint64
		ids := make(chan uint64)
		go func() {
			for {
				next++
				ids <- next
			}
		}()
		for range 8 {
			go func() {
				for id := range ids {
					var b Batch
					b.PutOutgoing(outgoing(id))
					b.AddIncoming(incoming("peer", id))
					if err := s.Commit(&b); err != nil {
						mu.Lock()
						fmt.Printf("error %v\n", err)
						mu.Unlock()
						return
					}
					if id > n {
						continue
					}
					mu.Lock()
					fmt.Printf("committed %d\n", id)
					if reported++; reported == n {
						fmt.Println("done")
					}
					mu.Unlock()
				}
			}()
		}
		select {} // until killed
	}
	return fail(fmt.Errorf("unknown helper mode %q", mode))
}

// helper is a running helper process.
type helper struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // closed at the helper's EOF
}

func startHelper(t *testing.T, mode, dir string, env ...string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode, helperDir + "=" + dir}, env...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 1024)}
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { h.kill() })
	return h
}

// expect waits for the helper's next line, which must start with want.
func (h *helper) expect(want string) string {
	h.t.Helper()
	line, ok := recvLine(h.t, h.lines)
	if !ok || !strings.HasPrefix(line, want) {
		h.t.Fatalf("helper said %q (open %v), want %q", line, ok, want)
	}
	return line
}

func recvLine(t *testing.T, lines <-chan string) (string, bool) {
	t.Helper()
	select {
	case line, ok := <-lines:
		return line, ok
	case <-time.After(30 * time.Second):
		t.Fatal("timed out waiting for the helper process")
		panic("unreachable")
	}
}

// stop closes the helper's stdin and waits for it to exit by itself.
func (h *helper) stop() {
	h.t.Helper()
	_ = h.stdin.Close()
	h.wait()
}

// kill stops the helper by PID with SIGKILL, at once, and reaps it.
func (h *helper) kill() {
	if h.cmd.ProcessState != nil {
		return
	}
	_ = h.cmd.Process.Kill()
	h.wait()
}

// wait reaps the helper, within a deadline, and drains its output.
func (h *helper) wait() {
	h.t.Helper()
	done := make(chan error, 1)
	go func() {
		for range h.lines {
		}
		done <- h.cmd.Wait()
	}()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			h.t.Errorf("helper: %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = h.cmd.Process.Kill()
		h.t.Fatal("helper process did not exit")
	}
}

func TestOpenLockedByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, "hold", dir)
	h.expect("ready")
	start := time.Now()
	_, err := Open(dir, Options{LockTimeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Open: %v, want ErrLocked", err)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("gave up after %v, before the LockTimeout of 300ms", waited)
	}
	if want := "store: " + filepath.Join(dir, DirName) + " is in use by another process"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	h.stop()
	s := openT(t, dir, Options{})
	closeT(t, s)
	loadT(t, s)
}

func TestOpenWaitsLockTimeoutForAnotherProcess(t *testing.T) {
	// The other process lets go within the LockTimeout: Open gets the store.
	dir := t.TempDir()
	h := startHelper(t, "hold", dir)
	h.expect("ready")
	opened := make(chan error, 1)
	waiting := make(chan struct{})
	var once sync.Once
	busy := func() { once.Do(func() { close(waiting) }) }
	go func() {
		s, err := Open(dir, Options{LockTimeout: 30 * time.Second, busy: busy})
		if err == nil {
			err = s.Close()
		}
		opened <- err
	}()
	// Open found the store held and waits: only now does the other
	// process let go, so that the test is of the wait.
	select {
	case <-waiting:
	case err := <-opened:
		t.Fatalf("Open returned %v while the other process held the store", err)
	}
	h.stop()
	if err := recv(t, opened, "Open"); err != nil {
		t.Fatalf("Open after the other process let go: %v", err)
	}
}

func TestOpenLockedWhileAnotherProcessCreates(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, "holdtmp", dir)
	h.expect("ready")
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Open: %v, want ErrLocked", err)
	}
	if want := "store: " + filepath.Join(dir, DirName) + " is in use by another process"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	h.stop()
	s := openT(t, dir, Options{})
	closeT(t, s)
}

// TestCrashKeepsCommitted: a process killed with SIGKILL, while it commits,
// right after its last reported Commit returned, loses none of the records
// those Commits wrote.
func TestCrashKeepsCommitted(t *testing.T) {
	const n = 300
	dir := t.TempDir()
	for round := range 3 { // later rounds crash a store that recovered once
		h := startHelper(t, "commit", dir, helperN+"="+strconv.Itoa(n))
		committed := map[uint64]bool{}
		for {
			line := h.expect("")
			if line == "done" {
				break
			}
			id, err := strconv.ParseUint(strings.TrimPrefix(line, "committed "), 10, 64)
			if err != nil {
				t.Fatalf("helper said %q", line)
			}
			committed[id] = true
		}
		h.kill() // the writers are still committing records past n
		if len(committed) != n {
			t.Fatalf("round %d: %d records reported, want %d", round, len(committed), n)
		}

		s := openT(t, dir, Options{})
		st := loadT(t, s)
		out := map[uint64]bool{}
		for _, o := range st.Outgoing {
			out[o.ID] = true
		}
		in := map[uint64]bool{}
		for _, r := range st.Incoming {
			in[r.ID] = true
		}
		for id := range committed {
			if !out[id] || !in[id] {
				t.Errorf("round %d: record %d committed before the crash is lost (outgoing %v, incoming %v)", round, id, out[id], in[id])
			}
		}
		if len(out) != len(in) {
			t.Errorf("round %d: %d outgoing but %d incoming records: a batch was torn", round, len(out), len(in))
		}
		// The next round starts from scratch.
		commitT(t, s, func(b *Batch) {
			for id := range out {
				b.DeleteOutgoing(id)
				b.DeleteIncoming("peer", id)
			}
		})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
