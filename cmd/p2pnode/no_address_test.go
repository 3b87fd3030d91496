package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A send to an allowlisted peer with no connection and no address known
// ends at once, as operations.md's troubleshooting table says: the stdin
// status event says not_connected (the p2p reason), the exchange, send and
// the dead letter dial_failed (the handler's reason for "no address
// known") with the error "not_connected: not connected and no address
// known", after 1 attempt. The table named only "reason: not_connected",
// which send and the dead letters never show.
func TestSendNoAddressKnownAsDocumented(t *testing.T) {
	t.Parallel()
	const errText = "not_connected: not connected and no address known"
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for _, l := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(l, "|") && strings.Contains(l, "not connected and no address known") {
			row = l
		}
	}
	for _, want := range []string{"`status ... reason: not_connected`", "dial_failed", errText, "1 attempt", "dead-lettered"} {
		if !strings.Contains(row, want) {
			t.Errorf("operations.md's troubleshooting row %q does not say %q", row, want)
		}
	}

	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	data := filepath.Join(dir, "data")
	a, _ := startNode(t, "a", dir, keyA, list, "--data-dir", data)

	a.send(map[string]any{"cmd": "send", "peer": idB, "data": "x", "id": 5})
	evs := a.expect("the status and exchange events",
		match("status", "peer", idB, "id", 5, "ok", false, "reason", "not_connected"),
		match("exchange", "peer", idB, "id", 5, "ok", false, "reason", "dial_failed", "attempts", 1, "dead_lettered", true))
	for _, e := range evs {
		if !strings.Contains(e.Str("error"), errText) {
			t.Errorf("%s event error %q, want %q", e.Str("event"), e.Str("error"), errText)
		}
	}
	r := runCLI(t, dir, "send", "--data-dir", data, "--to", idB, "x")
	if r.code != exitError || !strings.Contains(r.stderr, "dial_failed after 1 attempt") || !strings.Contains(r.stderr, errText) {
		t.Errorf("send: %+v; want exit %d, dial_failed after 1 attempt and %q", r, exitError, errText)
	}
	stopAll(t, a)
}
