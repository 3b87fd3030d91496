package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A send waiting through the control socket when its node stops hears how
// its exchange ended, since the exchange may still end while the handler
// closes: here its reply comes once the stop has begun. (The socket used to
// close first, and send said the exchange stayed in the outbox, exit 1,
// while the node printed it ok.)
func TestControlSendEndsDuringStop(t *testing.T) {
	t.Parallel()
	w := startSendWaiting(t, "--metrics-addr", "127.0.0.1:0")
	w.a.signal(syscall.SIGTERM)
	awaitNotReady(t, "http://"+w.la.Str("metrics")+"/readyz")
	w.b.send(map[string]any{"cmd": "respond", "peer": w.idA, "exchange": w.ex, "data": "signed"})

	code, out := w.send.wait()
	if code != 0 || strings.Join(out, "\n") != "signed" {
		t.Fatalf("send: exit %d, stdout %q, stderr %q", code, out, w.send.errOutput())
	}
	code, rest := w.a.wait()
	if code != 0 {
		t.Fatalf("a exited %d: %s", code, w.a.errOutput())
	}
	if len(matching(t, rest, match("exchange", "peer", w.idB, "exchange", w.ex, "ok", true))) != 1 {
		t.Fatalf("a's output while stopping: %q", rest)
	}
	if ob := storeList(t, w.dir, "outbox", "--data-dir", w.data); len(ob) != 0 {
		t.Fatalf("outbox after the exchange ended: %v", ob)
	}
	stopAll(t, w.b)
}

// An exchange still unfinished when its node has stopped stays in the
// outbox, and the send waiting for it says so, once the handler has closed
// (its CloseTimeout): not before, when it could still have ended.
func TestControlSendUnfinishedAtStop(t *testing.T) {
	t.Parallel()
	w := startSendWaiting(t) // b never answers
	w.a.signal(syscall.SIGTERM)

	code, _ := w.send.wait()
	want := "before exchange " + w.ex + " ended: it stays in the outbox and resumes at the next start"
	if code != exitError || !strings.Contains(w.send.errOutput(), want) {
		t.Fatalf("send: exit %d, stderr %q; want %q", code, w.send.errOutput(), want)
	}
	if code, _ := w.a.wait(); code != 0 {
		t.Fatalf("a exited %d: %s", code, w.a.errOutput())
	}
	ob := storeList(t, w.dir, "outbox", "--data-dir", w.data)
	if len(ob) != 1 || ob[0]["exchange"] != w.ex {
		t.Fatalf("outbox after the stop: %v; want exchange %s", ob, w.ex)
	}
	stopAll(t, w.b)
}

// sendWaiting is a send through node a, with a store in data, waiting for
// the reply of b, which answers only by stdin commands: the request ex has
// reached b.
type sendWaiting struct {
	dir, data, idA, idB, ex string
	a, b, send              *proc
	la                      event
}

// startSendWaiting starts b, then a with a store and aFlags, then a send
// through a to b, and waits for the request to reach b.
func startSendWaiting(t *testing.T, aFlags ...string) *sendWaiting {
	t.Helper()
	w := &sendWaiting{dir: t.TempDir()}
	keyA, idA := newKey(t, w.dir, "a.key")
	keyB, idB := newKey(t, w.dir, "b.key")
	w.idA, w.idB = idA, idB
	list := filepath.Join(w.dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	w.data = filepath.Join(w.dir, "data")

	b, lb := startNode(t, "b", w.dir, keyB, list)
	w.b = b
	w.a, w.la = startNode(t, "a", w.dir, keyA, list, append([]string{"--data-dir", w.data}, aFlags...)...)
	w.send = startProc(t, "send", w.dir, false, "send", "--data-dir", w.data, "--to", idB, "--addr", firstAddr(t, lb),
		"--timeout", "60s", "sign this")
	w.ex = b.expect("the request", match("request", "from", idA, "data", "sign this"))[0].Str("exchange")
	return w
}

// Ctrl-C on a waiting send ends it with one line and exit 1 that say what
// became of the exchange: through a node it goes on there (and does end
// there), with send's own node it is abandoned. (send used to die of the
// signal, printing nothing, status 130.)
func TestSendInterrupted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	keyS, idS := newKey(t, dir, "s.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB, idS)
	data := filepath.Join(dir, "data")

	b, lb := startNode(t, "b", dir, keyB, list) // answers by stdin commands
	addrB := firstAddr(t, lb)
	a, _ := startNode(t, "a", dir, keyA, list, "--data-dir", data)

	send := startProc(t, "send", dir, false, "send", "--data-dir", data, "--to", idB, "--addr", addrB, "--timeout", "60s", "one")
	ex := b.expect("the request through a", match("request", "from", idA, "data", "one"))[0].Str("exchange")
	send.signal(os.Interrupt)
	code, _ := send.wait()
	if want := "send to " + idB + ": interrupted; the exchange goes on in the node"; code != exitError || !strings.Contains(send.errOutput(), want) {
		t.Fatalf("send through a node, interrupted: exit %d, stderr %q; want %q", code, send.errOutput(), want)
	}
	b.send(map[string]any{"cmd": "respond", "peer": idA, "exchange": ex, "data": "late"})
	a.expect("the exchange, ended in the node", match("exchange", "peer", idB, "exchange", ex, "ok", true))

	alone := startProc(t, "send-standalone", dir, false, "send", "--standalone", "--key", keyS, "--allowlist", list,
		"--to", idB, "--addr", addrB, "--timeout", "60s", "two")
	b.expect("the request from send's own node", match("request", "from", idS, "data", "two"))
	alone.signal(os.Interrupt)
	code, _ = alone.wait()
	if want := "send to " + idB + ": interrupted; the exchange is abandoned with send's own node"; code != exitError || !strings.Contains(alone.errOutput(), want) {
		t.Fatalf("standalone send, interrupted: exit %d, stderr %q; want %q", code, alone.errOutput(), want)
	}
	stopAll(t, a, b)
}

// awaitNotReady waits until url (a node's /readyz) answers 503: the node
// has begun to stop. There is no event to wait on: a stop prints nothing
// until it is done.
func awaitNotReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusServiceUnavailable {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not turn unready within %s (last: %v)", url, waitTimeout, err)
		}
		// A poll, bounded by the deadline above: the stop's first sign
		// outside the process is /readyz turning 503 (it prints nothing,
		// and a control call would start work it refuses), so there is
		// no event to block on.
		time.Sleep(5 * time.Millisecond)
	}
}

// A send waiting through a node that is killed (SIGKILL) says the node went
// away before the exchange ended, and that a node with a store resumes it
// at its next start; it did, and it ends there. (send printed only
// "unexpected EOF", the broken connection read as the node's answer.)
func TestSendNodeKilled(t *testing.T) {
	t.Parallel()
	w := startSendWaiting(t)
	w.a.kill()

	code, out := w.send.wait()
	r := result{code: code, stdout: strings.Join(out, "\n"), stderr: w.send.errOutput()}
	oneErrorLine(t, r, "send to "+w.idB+": the node went away before the exchange ended (the connection to the node")
	if want := "a node with a store resumes it at its next start"; !strings.Contains(r.stderr, want) {
		t.Fatalf("send's error %q does not say %q", r.stderr, want)
	}
	if code != exitError {
		t.Fatalf("send exited %d, want %d", code, exitError)
	}
	if ob := storeList(t, w.dir, "outbox", "--data-dir", w.data); len(ob) != 1 || ob[0]["exchange"] != w.ex {
		t.Fatalf("outbox of the killed node: %v; want exchange %s", ob, w.ex)
	}
	stopAll(t, w.b)
}
