package interop_test

// Child processes of the interop test: p2pnode and the JS peer, both of
// which print one JSON event per line on stdout and take JSON commands on
// stdin. Nothing sleeps: the test reads their lines with a deadline.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// waitTimeout bounds every wait for an event or an exit, and startTimeout
// the wait for a child's first event (Node.js loading libp2p, a race-enabled
// p2pnode starting). Generous: two cores under a load of 30 are slow, and a
// passing test never waits either out.
const (
	waitTimeout  = 60 * time.Second
	startTimeout = 3 * time.Minute
)

// proc is a running child process.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // stdout, line by line; closed at EOF

	stderrMu sync.Mutex
	stderr   bytes.Buffer

	seen []string // every line expect read, for the report of a failure

	exited chan struct{} // closed once the process has been waited for
	err    error         // the Wait result, set before exited closes
}

// startProc starts name with args in dir; cleanup kills it by PID if the
// test did not stop it.
func startProc(t *testing.T, label, dir string, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: label, lines: make(chan string, 256), exited: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Dir = dir
	p.cmd.Env = env
	p.cmd.Stderr = lockedWriter{&p.stderrMu, &p.stderr}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", label, err)
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

// report logs what the process printed so far, when the test failed.
func (p *proc) report(t *testing.T) {
	if t.Failed() {
		// Also what it printed after the last wait: nothing waits for it now.
		for more := true; more; {
			select {
			case l, ok := <-p.lines:
				if more = ok; ok {
					p.seen = append(p.seen, l)
				}
			default:
				more = false
			}
		}
		t.Logf("%s printed:\n%s\n%s stderr:\n%s", p.name, strings.Join(p.seen, "\n"), p.name, p.errOutput())
	}
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

// expect reads events until one satisfies each of preds, in any order, and
// returns the matches in the order of preds. Other events are skipped, but
// an "error" event fails the test: neither side reports one when the
// protocol is followed.
func (p *proc) expect(t *testing.T, what string, preds ...func(event) bool) []event {
	t.Helper()
	return p.expectWithin(t, waitTimeout, what, preds...)
}

// expectWithin is expect with a deadline of its own.
func (p *proc) expectWithin(t *testing.T, d time.Duration, what string, preds ...func(event) bool) []event {
	t.Helper()
	deadline := time.After(d)
	found := make([]event, len(preds))
	left := len(preds)
	var skipped []string // shown if the wait fails
	for left > 0 {
		var line string
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("%s: output ended while waiting for %s; skipped:\n%s\nstderr:\n%s",
					p.name, what, strings.Join(skipped, "\n"), p.errOutput())
			}
			line = l
		case <-deadline:
			t.Fatalf("%s: no %s within %s; skipped:\n%s\nstderr:\n%s",
				p.name, what, d, strings.Join(skipped, "\n"), p.errOutput())
		}
		p.seen = append(p.seen, line)
		var e event
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Str("event") == "" {
			t.Fatalf("%s: output line is not a JSON event: %q", p.name, line)
		}
		if e.Str("event") == "error" {
			t.Fatalf("%s: error event while waiting for %s: %s\nskipped:\n%s\nstderr:\n%s",
				p.name, what, line, strings.Join(skipped, "\n"), p.errOutput())
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
func (p *proc) send(t *testing.T, v any) {
	t.Helper()
	line, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		t.Fatalf("%s: write stdin: %v", p.name, err)
	}
}

// stop closes stdin, which stops both kinds of child, waits for the exit,
// and returns the rest of the output. It fails the test unless the process
// exits 0 within waitTimeout.
func (p *proc) stop(t *testing.T) []string {
	t.Helper()
	p.stdin.Close()
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
				t.Fatalf("%s: did not exit within %s", p.name, waitTimeout)
			}
			if ee, ok := errors.AsType[*exec.ExitError](p.err); ok {
				t.Fatalf("%s exited %d; output:\n%s\nstderr:\n%s", p.name, ee.ExitCode(), strings.Join(rest, "\n"), p.errOutput())
			}
			if p.err != nil {
				t.Fatalf("%s: %v", p.name, p.err)
			}
			return rest
		case <-deadline:
			t.Fatalf("%s: did not exit within %s; stderr:\n%s", p.name, waitTimeout, p.errOutput())
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

// childEnv is the environment of the children. A race-enabled p2pnode
// sleeps a second at exit by default; races still fail the test (exit 66).
func childEnv() []string {
	return append(os.Environ(), "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
}
