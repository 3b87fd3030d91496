package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// send through the node that stops waiting at --timeout names the exchange
// it leaves running in the node, so that its outcome can be found later
// (the node's events, p2pnode outbox list): in its error line, and with
// --json in a "running" object on stdout.
func TestSendTimeoutNamesTheExchange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeNamedAllowlist(t, list, idA, "alice", idB, "bob")
	data := filepath.Join(dir, "data")

	b, lb := startNode(t, "b", dir, keyB, list) // takes requests, answers none
	addrB := firstAddr(t, lb)
	a, _ := startNode(t, "a", dir, keyA, list, "--data-dir", data)
	defer stopAll(t, a, b)

	hex := regexp.MustCompile(`exchange ([0-9a-f]{16}) goes on in the node`)
	r := runCLI(t, dir, "send", "--data-dir", data, "--to", idB, "--addr", addrB, "--timeout", "300ms", "first")
	m := hex.FindStringSubmatch(r.stderr)
	if r.code != exitError || m == nil || !strings.Contains(r.stderr, "no answer within 300ms") {
		t.Fatalf("send: exit %d, stderr %q; want the running exchange's ID", r.code, r.stderr)
	}
	b.expect("the first request", match("request", "from", idA, "exchange", m[1], "data", "first"))

	r = runCLI(t, dir, "send", "--data-dir", data, "--to", idB, "--addr", addrB, "--timeout", "300ms", "--json", "second")
	var out struct{ Event, Peer, Exchange string }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != exitError ||
		out.Event != "running" || out.Peer != idB || !strings.Contains(r.stderr, "exchange "+out.Exchange+" goes on") {
		t.Fatalf("send --json: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// Queued behind the first, which b never answers: in a's outbox.
	if list := mustRun(t, dir, "outbox", "list", "--data-dir", data); !strings.Contains(list, out.Exchange) {
		t.Fatalf("outbox list does not show exchange %s:\n%s", out.Exchange, list)
	}
}
