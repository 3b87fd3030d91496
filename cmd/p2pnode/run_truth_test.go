package main

// What run prints must tell the truth: an event for every command, and
// nothing marked handled that was not printed.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// A stdin request the handler refuses at once (here: a peer the allowlist
// does not list) gets no reply and no exchange event: its only event is an
// error, and a script that matches events to its commands by "id" must be
// able to find it. A refused send's status carries its id; so must the
// refused request's event.
func TestRefusedRequestCarriesItsID(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	_, idC := newKey(t, dir, "c.key") // not allowlisted
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	a, _ := startNode(t, "a", dir, keyA, list, "--ephemeral")

	a.send(map[string]any{"cmd": "send", "peer": idC, "data": "x", "id": 6})
	a.send(map[string]any{"cmd": "request", "peer": idC, "data": "x", "id": 7})
	ev := a.expect("the refused send and request",
		match("status", "peer", idC, "id", 6, "ok", false),
		errorWith("request 7"))
	if ev[1].Str("id") != "7" {
		t.Errorf("the refused request's only event has no \"id\": 7: %v", ev[1])
	}
	stopAll(t, a)
}

// The ids run numbers stdin commands with continue after the largest id
// of the exchanges the store holds, so that an exchange coming back from
// the store and a new one never share an id. Dead letters come back too
// (deadletters retry, on the running node at once): a new command must not
// be given a dead letter's id.
func TestAutoIDsSkipDeadLetterIDs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	dead := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", tu.LoopbackPort(t), idB)
	args := []string{"--data-dir", filepath.Join(dir, "a-data"), "--max-attempts", "1"}

	a, _ := startNode(t, "a", dir, keyA, list, args...)
	a.send(map[string]any{"cmd": "send", "addr": dead, "data": "first"}) // numbered 1
	lost := a.expect("the dead-lettered send",
		match("exchange", "peer", idB, "id", 1, "ok", false, "dead_lettered", true))[0]
	stopAll(t, a)

	a2, _ := startNode(t, "a2", dir, keyA, list, args...)
	a2.send(map[string]any{"cmd": "send", "addr": dead, "data": "second"})
	st := a2.expect("the new send's status", match("status", "peer", idB))[0]
	if st.Str("id") == "1" {
		t.Errorf("a new send was numbered 1, the id of dead letter %s: after deadletters retry two exchanges report id 1",
			lost.Str("exchange"))
	}
	stopAll(t, a2)
}

// failingOut is a stdout whose every write fails, as a file on a full disk
// (ENOSPC) or a closed pipe with SIGPIPE ignored (systemd's default) does.
// It reports the attempts it sees.
type failingOut struct {
	mu        sync.Mutex
	listening chan struct{}
	data      chan struct{}
	once      [2]sync.Once
}

func (w *failingOut) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.Contains(p, []byte(`"event":"listening"`)) {
		w.once[0].Do(func() { close(w.listening) })
	}
	if bytes.Contains(p, []byte(`"event":"data"`)) {
		w.once[1].Do(func() { close(w.data) })
	}
	return 0, errors.New("write /dev/stdout: no space left on device")
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A received message is printed, then marked handled: "at least once on
// stdout". When the print fails (stdout on a full disk, a broken pipe with
// SIGPIPE ignored), the message was not printed and must not be marked
// handled: the next run on the data directory delivers it again.
func TestMessageNotPrintedIsNotMarkedHandled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	portB := tu.LoopbackPort(t)
	listen := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", portB)
	dataB := filepath.Join(dir, "b-data")
	runB := []string{"run", "--json", "--key", keyB, "--allowlist", list, "--listen", listen, "--data-dir", dataB}

	// B in this process, its stdout failing every write.
	out := &failingOut{listening: make(chan struct{}), data: make(chan struct{})}
	inR, inW := io.Pipe()
	var errB lockedBuf
	code := make(chan int, 1)
	go func() { code <- execute(runB, stdio{in: inR, out: out, err: &errB}) }()
	deadline := time.After(waitTimeout)
	select {
	case <-out.listening:
	case c := <-code:
		t.Fatalf("b exited %d: %s", c, errB.String())
	case <-deadline:
		t.Fatalf("b did not start; stderr:\n%s", errB.String())
	}

	a, _ := startNode(t, "a", dir, keyA, list, "--ephemeral")
	a.send(map[string]any{"cmd": "send", "addr": listen + "/p2p/" + idB, "data": "pay 1 BTC", "id": 1})
	a.expect("the message's status", match("status", "peer", idB, "id", 1, "ok", true))
	// B's loop tried to print it; what follows in the loop (marking it
	// handled) is done before the loop reads the end of stdin.
	select {
	case <-out.data:
	case <-deadline:
		t.Fatalf("b never tried to print the message; stderr:\n%s", errB.String())
	}
	inW.Close()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("b exited %d: %s", c, errB.String())
		}
	case <-deadline:
		t.Fatal("b did not stop")
	}
	stopAll(t, a)

	// B again on the same data directory, with a working stdout.
	var out2, errB2 lockedBuf
	if c := execute(runB, stdio{in: strings.NewReader(""), out: &out2, err: &errB2}); c != 0 {
		t.Fatalf("b again exited %d: %s", c, errB2.String())
	}
	if !strings.Contains(out2.String(), `"data":"pay 1 BTC"`) {
		t.Errorf("the message B never printed is not delivered again: it was marked handled although its print failed; output:\n%s",
			out2.String())
	}
}
