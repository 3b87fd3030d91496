package main

// Helpers of the end-to-end tests: p2pnode is run as real processes (the
// test binary itself, under the name p2pnode: see TestMain). Nothing
// sleeps: tests read the processes' output lines with a deadline.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// waitTimeout bounds every wait for a line or an exit. Generous: the race
// detector on two cores is slow, and a passing test never waits it out.
const waitTimeout = 20 * time.Second

// binPath is the p2pnode the tests run: a link named p2pnode to the test
// binary, which TestMain then runs as p2pnode (see asP2pnode).
var binPath string

// binName is the name under which the test binary is p2pnode.
const binName = "p2pnode"

func TestMain(m *testing.M) {
	if asP2pnode() {
		main()
	}
	if len(os.Args) > 1 && os.Args[1] == stuckStoreChildArg {
		os.Exit(stuckStoreChild(os.Args[2:]))
	}
	os.Exit(setupAndRun(m))
}

// asP2pnode reports whether this process was started as p2pnode: through
// binPath, with childEnv (so that a test binary someone names p2pnode
// still runs the tests). The test binary holds all of package main, built
// as this test run asked (with -race under -race), so it is p2pnode's
// main. Building p2pnode again instead ("go build", as TestMain did) took
// 13 s of a quiet two-core machine's package run and 66 s of a loaded
// one, before any test ran, for a binary that differs only in what the
// tests' own files add: nothing at init, and no flags (the CLI's are
// pflag sets of its own; the testing flags are in the flag package's).
func asP2pnode() bool {
	return filepath.Base(os.Args[0]) == binName && os.Getenv(childMark) == "1"
}

// childMark is set to 1 in the environment of the p2pnode processes.
const childMark = "P2PNODE_TEST_CHILD"

func setupAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "p2pnode-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// run keeps a store in a data directory under XDG_STATE_HOME unless
	// told otherwise: the processes the tests start keep theirs here, not
	// in the home directory of whoever runs the tests.
	if err := os.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binPath = filepath.Join(dir, binName)
	if err := os.Symlink(self, binPath); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// childEnv is the environment of the p2pnode processes. A race-enabled
// binary sleeps a second at exit by default (to catch races in exit
// handlers); the tests start dozens of processes. Races still fail a test:
// the binary then exits with status 66 and a report on stderr.
func childEnv() []string {
	return append(os.Environ(), "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"), childMark+"=1")
}

// result is a finished p2pnode invocation.
type result struct {
	stdout, stderr string
	code           int
}

// runCLI runs p2pnode to completion in dir with args.
func runCLI(t *testing.T, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Dir = dir
	cmd.Env = childEnv()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("p2pnode %v: %v", args, err)
	}
	return result{out.String(), errOut.String(), code}
}

// mustRun runs p2pnode and fails the test unless it succeeds.
func mustRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	r := runCLI(t, dir, args...)
	if r.code != 0 {
		t.Fatalf("p2pnode %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

// proc is a running p2pnode.
type proc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // stdout, line by line; closed at EOF

	stderrMu sync.Mutex
	stderr   bytes.Buffer

	exited chan struct{} // closed once the process has been waited for
	err    error         // the Wait result, set before exited closes
}

// startProc starts p2pnode with args in dir. With stdin false the process
// reads /dev/null. Cleanup kills it if the test did not stop it.
func startProc(t *testing.T, name, dir string, withStdin bool, args ...string) *proc {
	t.Helper()
	return startCmd(t, name, dir, withStdin, exec.Command(binPath, args...))
}

// startCmd is startProc for a command of the caller's: p2pnode run by
// another program that execs it (ip netns exec), so that its PID is
// p2pnode's.
func startCmd(t *testing.T, name, dir string, withStdin bool, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{t: t, name: name, lines: make(chan string, 256), exited: make(chan struct{})}
	p.cmd = cmd
	p.cmd.Dir = dir
	p.cmd.Env = childEnv()
	p.cmd.Stderr = lockedWriter{&p.stderrMu, &p.stderr}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if withStdin {
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		// Wait closes the stdout pipe: only once it has been read to EOF.
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.cmd.Process.Kill()
		for range p.lines {
		}
		<-p.exited
	})
	return p
}

// errOutput is what the process wrote on stderr so far.
func (p *proc) errOutput() string {
	p.stderrMu.Lock()
	defer p.stderrMu.Unlock()
	return p.stderr.String()
}

// event is one parsed --json output line; match builds a predicate on one
// (internal/testutil, shared with the other end-to-end tests).
type event = tu.Event

var match = tu.Match

// nextLine returns the next stdout line, failing the test at the deadline
// or at the end of the output.
func (p *proc) nextLine(deadline <-chan time.Time, what string, skipped ...string) string {
	p.t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("%s: output ended while waiting for %s; skipped:\n%s\nstderr:\n%s",
				p.name, what, strings.Join(skipped, "\n"), p.errOutput())
		}
		return l
	case <-deadline:
		p.t.Fatalf("%s: no %s within %s; skipped:\n%s\nstderr:\n%s",
			p.name, what, waitTimeout, strings.Join(skipped, "\n"), p.errOutput())
	}
	return ""
}

// expect reads --json events until one satisfies each of preds, in any
// order, and returns the matches in the order of preds. Other events are
// skipped; a line that is not a JSON object fails the test.
func (p *proc) expect(what string, preds ...func(event) bool) []event {
	p.t.Helper()
	deadline := time.After(waitTimeout)
	found := make([]event, len(preds))
	left := len(preds)
	var skipped []string // shown if the wait fails
	for left > 0 {
		line := p.nextLine(deadline, what, skipped...)
		var e event
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Str("event") == "" {
			p.t.Fatalf("%s: output line is not a JSON event: %q", p.name, line)
		}
		matched := false
		for i, pred := range preds {
			if found[i] == nil && pred(e) {
				found[i] = e
				left--
				matched = true
				break
			}
		}
		if !matched {
			skipped = append(skipped, line)
		}
	}
	return found
}

// send writes one command line on the process's stdin.
func (p *proc) send(v any) {
	p.t.Helper()
	var line []byte
	if s, ok := v.(string); ok {
		line = []byte(s)
	} else {
		var err error
		if line, err = json.Marshal(v); err != nil {
			p.t.Fatal(err)
		}
	}
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		p.t.Fatalf("%s: write stdin: %v", p.name, err)
	}
}

// signal sends sig to the process.
func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
}

// kill SIGKILLs the process, as a crash would stop it, and waits for it
// to be gone; what it printed meanwhile is returned.
func (p *proc) kill() []string {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Fatalf("%s: kill: %v", p.name, err)
	}
	_, rest := p.wait()
	return rest
}

// wait waits for the process to exit, reading (and returning) the rest of
// its output meanwhile, and returns its exit status.
func (p *proc) wait() (int, []string) {
	p.t.Helper()
	var rest []string
	deadline := time.After(waitTimeout)
	for {
		select {
		case l, ok := <-p.lines:
			if ok {
				rest = append(rest, l)
				continue
			}
			select {
			case <-p.exited:
			case <-deadline:
				p.t.Fatalf("%s: did not exit within %s", p.name, waitTimeout)
			}
			if ee, ok := errors.AsType[*exec.ExitError](p.err); ok {
				return ee.ExitCode(), rest
			}
			if p.err != nil {
				p.t.Fatalf("%s: %v", p.name, p.err)
			}
			return 0, rest
		case <-deadline:
			p.t.Fatalf("%s: did not exit within %s; stderr:\n%s", p.name, waitTimeout, p.errOutput())
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// stopAll closes each process's stdin, which stops a run node, and fails
// the test unless every one exits 0.
func stopAll(t *testing.T, ps ...*proc) {
	t.Helper()
	for _, p := range ps {
		p.stdin.Close()
	}
	for _, p := range ps {
		if code, _ := p.wait(); code != 0 {
			t.Fatalf("%s exited %d; stderr:\n%s", p.name, code, p.errOutput())
		}
	}
}
