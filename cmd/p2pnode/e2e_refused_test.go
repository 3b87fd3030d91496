package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A key the receiver does not allowlist, and one it allowlists from another
// IP: each send fails with one line naming the likely cause and the
// sender's ID; the receiver prints a refused event for each (with the
// allowlist's name when the key is listed) and logs a warning, and the
// counts of its refused events add up to its refusal metric (the sender
// retries: later refusals are folded into one event, printed at the latest
// when the node stops).
func TestRefusalSeenOnBothSides(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyR, idR := newKey(t, dir, "r.key")
	keyS, idS := newKey(t, dir, "s.key")
	keyB, idB := newKey(t, dir, "b.key")
	listR := filepath.Join(dir, "r.yaml")
	doc := "peers:\n  - id: " + idR + "\n  - id: " + idB + "\n    name: bound-op\n    addrs: [10.9.9.9]\n"
	if err := os.WriteFile(listR, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	listS := filepath.Join(dir, "s.yaml")
	writeAllowlist(t, listS, idR, idS, idB)
	r, lr := startNode(t, "receiver", dir, keyR, listR, "--metrics-addr", "127.0.0.1:0")
	addrR := firstAddr(t, lr)

	counts := map[string]int{}
	for _, who := range []struct{ key, id, reason, name string }{
		{keyS, idS, "unknown_peer", ""},
		{keyB, idB, "peer_ip_mismatch", "bound-op"},
	} {
		res := runCLI(t, dir, "send", "--standalone", "--key", who.key, "--allowlist", listS, "--addr", addrR,
			"--max-attempts", "3", "--backoff-base", "10ms", "hello?")
		oneErrorLine(t, res, "send to "+idR+": the peer closed the connection during the handshake: it may not allowlist "+who.id)
		if !strings.Contains(res.stderr, "outlasted the peer's handshake timeout") {
			t.Fatalf("the refusal does not name the other cause, a slow handshake: %s", res.stderr)
		}
		e := r.expect("refused event", match("refused", "peer", who.id, "ip", "127.0.0.1", "reason", who.reason))[0]
		if e.Str("count") != "1" || e.Str("peer_name") != who.name {
			t.Fatalf("refused event %v: want count 1, peer_name %q", e, who.name)
		}
		counts[who.reason]++
	}

	resp, err := (&http.Client{Timeout: waitTimeout}).Get("http://" + lr.Str("metrics") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	r.stdin.Close()
	code, rest := r.wait()
	if code != 0 {
		t.Fatalf("receiver exited %d", code)
	}
	for _, l := range rest {
		var e event
		if json.Unmarshal([]byte(l), &e) == nil && e.Str("event") == "refused" {
			n, _ := strconv.Atoi(e.Str("count"))
			counts[e.Str("reason")] += n
		}
	}
	for _, reason := range []string{"unknown_peer", "peer_ip_mismatch"} {
		// Three attempts each, one connection each.
		want := `bitvmx_p2p_connections_refused_total{reason="` + reason + `"} 3`
		if counts[reason] != 3 || !strings.Contains(string(body), want+"\n") {
			t.Errorf("%s: events count %d; metrics want %s:\n%s", reason, counts[reason], want, body)
		}
	}
	if errs := r.errOutput(); !strings.Contains(errs, "connection refused") || !strings.Contains(errs, `"peer_name": "bound-op"`) {
		t.Errorf("receiver's warnings:\n%s", errs)
	}
}
