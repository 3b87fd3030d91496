package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// End-to-end tests of the exchange handler's commands: send, run's request,
// reply and exchange events, auto-reply, demo and bench. The DHT's are in
// e2e_dht_test.go.

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// oneErrorLine fails the test unless r failed with exactly one
// "p2pnode: ..." line on stderr containing want.
func oneErrorLine(t *testing.T, r result, want string) {
	t.Helper()
	l := lines(r.stderr)
	if r.code == 0 || len(l) != 1 || !strings.HasPrefix(l[0], "p2pnode: ") || !strings.Contains(l[0], want) {
		t.Fatalf("exit %d\nstdout: %q\nstderr: %q\nwant one p2pnode: line containing %q", r.code, r.stdout, r.stderr, want)
	}
}

// A run node with --auto-reply echo answers the send command, which prints
// the reply and exits 0; the node reports the request and the exchange. A
// one-way message is acknowledged; --json prints one object.
func TestSendCommandGetsEchoedReply(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyB, idB := newKey(t, dir, "b.key")
	keyS, idS := newKey(t, dir, "s.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idB, idS)
	b, lb := startNode(t, "b", dir, keyB, list, "--auto-reply", "echo")
	addrB := firstAddr(t, lb)

	out := mustRun(t, dir, "send", "--standalone", "--key", keyS, "--allowlist", list, "--to", idB, "--addr", addrB, "hello, echo")
	if out != "hello, echo\n" {
		t.Fatalf("send printed %q", out)
	}
	ev := b.expect("request and its exchange",
		match("request", "from", idS, "data", "hello, echo"),
		match("exchange", "peer", idS, "kind", "request", "role", "responder", "ok", true, "reason", "ok"))
	if ev[0].Str("exchange") != ev[1].Str("exchange") || len(ev[0].Str("exchange")) != 16 {
		t.Fatalf("request %v and exchange %v", ev[0], ev[1])
	}

	var reply map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, dir, "send", "--standalone", "--key", keyS, "--allowlist", list, "--addr", addrB,
		"--json", "--data-b64", "/wA=")), &reply); err != nil {
		t.Fatal(err)
	}
	if reply["event"] != "reply" || reply["from"] != idB || reply["data_b64"] != "/wA=" || reply["data"] != nil {
		t.Fatalf("send --json: %v", reply)
	}

	out = mustRun(t, dir, "send", "--standalone", "--key", keyS, "--allowlist", list, "--addr", addrB, "--no-reply", "note")
	if !strings.HasPrefix(out, "acknowledged by "+idB) {
		t.Fatalf("send --no-reply printed %q", out)
	}
	var acked map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, dir, "send", "--standalone", "--key", keyS, "--allowlist", list, "--addr", addrB,
		"--no-reply", "--json", "note 2")), &acked); err != nil {
		t.Fatal(err)
	}
	if acked["event"] != "acked" || acked["peer"] != idB || acked["attempts"] != 1.0 {
		t.Fatalf("send --no-reply --json: %v", acked)
	}
	b.expect("messages", match("data", "from", idS, "data", "note"), match("data", "from", idS, "data", "note 2"))

	stopAll(t, b)
}

// A send that cannot complete fails with one line: nothing listening, or a
// peer that never answers within --timeout.
func TestSendCommandFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyB, idB := newKey(t, dir, "b.key")
	keyS, idS := newKey(t, dir, "s.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idB, idS)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "/ip4/127.0.0.1/tcp/" + itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	r := runCLI(t, dir, "send", "--standalone", "--key", keyS, "--allowlist", list, "--to", idB, "--addr", dead,
		"--max-attempts", "2", "--backoff-base", "10ms", "hello?")
	oneErrorLine(t, r, "dial_failed")

	// A node without --auto-reply prints the request and leaves it to
	// stdin, which never answers.
	b, lb := startNode(t, "b", dir, keyB, list)
	r = runCLI(t, dir, "send", "--standalone", "--key", keyS, "--allowlist", list, "--addr", firstAddr(t, lb), "--timeout", "1s", "anyone?")
	oneErrorLine(t, r, "send to "+idB)
	b.expect("request", match("request", "from", idS, "data", "anyone?"))
	b.stdin.Close()
	b.wait()
}

// Two run nodes exchange a request and its reply through stdin commands:
// request, reply and exchange events on both sides, carrying the id.
func TestStdinRequestRespond(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	a, _ := startNode(t, "a", dir, keyA, list)
	b, lb := startNode(t, "b", dir, keyB, list)

	a.send(map[string]any{"cmd": "request", "addr": firstAddr(t, lb), "data": "what is your nonce?", "id": 5})
	req := b.expect("request", match("request", "from", idA, "data", "what is your nonce?"))[0]
	ex := req.Str("exchange")
	b.send(map[string]any{"cmd": "respond", "peer": idA, "exchange": ex, "data": "42"})
	// A second answer is refused with an error event, and the node goes on.
	b.send(map[string]any{"cmd": "respond", "peer": idA, "exchange": ex, "data": "43"})
	b.send(map[string]any{"cmd": "respond", "peer": idA, "data": "44"})

	a.expect("reply and exchange",
		match("reply", "from", idB, "exchange", ex, "id", 5, "data", "42", "data_b64", "NDI="),
		match("exchange", "peer", idB, "exchange", ex, "id", 5, "kind", "request", "role", "dialer", "ok", true, "reason", "ok"))
	b.expect("exchange and errors",
		match("exchange", "peer", idA, "exchange", ex, "role", "responder", "ok", true),
		func(e event) bool {
			return e.Str("event") == "error" && strings.Contains(e.Str("error"), "already responded")
		},
		func(e event) bool {
			return e.Str("event") == "error" && strings.Contains(e.Str("error"), `respond needs "exchange"`)
		})

	stopAll(t, a, b)
}

// --metrics-addr serves the node's, the handler's and go-libp2p's metrics
// from one registry.
func TestRunServesAllMetrics(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "a.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id)
	p := startProc(t, "a", dir, false, "run", "--json", "--no-stdin", "--key", key, "--allowlist", list,
		"--listen", "/ip4/127.0.0.1/tcp/0", "--metrics-addr", "127.0.0.1:0", "--dht")
	l := p.expect("listening event", match("listening"))[0]
	resp, err := (&http.Client{Timeout: waitTimeout}).Get("http://" + l.Str("metrics") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{
		"go_goroutines", "bitvmx_p2p_connected_peers", "bitvmx_p2p_messages_sent_total",
		`bitvmx_p2p_exchanges_total{kind="request",result="ok",role="dialer"}`,
		"bitvmx_p2p_exchange_duration_seconds_bucket", "bitvmx_p2p_dht_routing_table_peers", "libp2p_",
	} {
		if !strings.Contains(string(body), name) {
			t.Errorf("metrics without %s", name)
		}
	}
	p.signal(syscall.SIGTERM)
	if code, _ := p.wait(); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.errOutput())
	}
}

// demo runs without files or flags, exits 0 and ends with its summary.
func TestDemo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := lines(mustRun(t, dir, "demo", "--nodes", "3"))
	last := out[len(out)-1]
	if !strings.HasPrefix(last, "summary: 12 exchanges, 12 ok, 0 failed; 24 acks; latency p50 ") {
		t.Fatalf("last line %q", last)
	}

	out = lines(mustRun(t, dir, "demo", "--json", "--nodes", "4", "--rounds", "1"))
	seen := map[string]int{}
	var sum map[string]any
	// The transcript is in the order things happened: a request before
	// its reply, a reply before its exchange's end, and times that only
	// grow.
	said := map[string]bool{} // "request A B", "reply B A"
	prev := 0.0
	for _, l := range out {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		ev := e["event"].(string)
		seen[ev]++
		sum = e
		if tm, ok := e["t_ms"].(float64); ok {
			if tm < prev {
				t.Errorf("line %q: time %.3f after %.3f", l, tm, prev)
			}
			prev = tm
		}
		from, to := fmt.Sprint(e["from"]), fmt.Sprint(e["to"])
		switch ev {
		case "request":
			said["request "+from+" "+to] = true
		case "reply":
			if !said["request "+to+" "+from] {
				t.Errorf("line %q: a reply before its request", l)
			}
			said["reply "+from+" "+to] = true
		case "exchange":
			if !said["reply "+to+" "+from] {
				t.Errorf("line %q: an exchange done before its reply was printed", l)
			}
		}
	}
	if sum["event"] != "summary" || sum["exchanges"] != 12.0 || sum["ok"] != 12.0 || sum["failed"] != 0.0 || sum["acks"] != 24.0 {
		t.Fatalf("summary %v", sum)
	}
	if seen["node"] != 4 || seen["request"] != 12 || seen["reply"] != 12 || seen["exchange"] != 12 {
		t.Fatalf("events %v", seen)
	}
}

// bench with a tiny count measures every workload against its baseline;
// --json is one object. Progress goes to stderr only.
func TestBenchTiny(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := runCLI(t, dir, "bench", "--count", "3")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, w := range []string{"acked send, 1 in flight", "acked send, 64 in flight", "exchange, kept connection", "exchange, dial + disconnect"} {
		found := false
		for _, l := range lines(r.stdout) {
			if f := strings.Fields(strings.TrimPrefix(l, w)); strings.HasPrefix(l, w) && len(f) >= 4 && strings.Contains(f[3], ".") {
				found = true
			}
		}
		if !found {
			t.Errorf("no row with a ratio for %q in\n%s", w, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "bench 4/4") {
		t.Errorf("no progress on stderr: %q", r.stderr)
	}

	var res struct {
		Workloads []struct {
			Name  string  `json:"name"`
			Ops   int     `json:"ops"`
			Ratio float64 `json:"ratio"`
		} `json:"workloads"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "bench", "--count", "2", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Workloads) != 4 {
		t.Fatalf("workloads %+v", res.Workloads)
	}
	for _, w := range res.Workloads {
		if w.Ops != 2 || w.Ratio <= 0 {
			t.Errorf("workload %+v", w)
		}
	}
}

// Bad input to the new subcommands: one line, non-zero, nothing on stdout.
func TestNewCommandErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "node.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id, testPeer)
	send := []string{"send", "--standalone", "--key", key, "--allowlist", list}
	find := []string{"find", "--key", key, "--allowlist", list}
	boot := "/ip4/127.0.0.1/tcp/1/p2p/" + testPeer
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"send no peer", append(send, "hi"), "no peer"},
		{"send no address", append(send, "--to", testPeer, "hi"), "give --addr, or --dht"},
		{"send nothing to send", append(send, "--to", testPeer, "--addr", "/ip4/127.0.0.1/tcp/1"), "nothing to send"},
		{"send bad peer", append(send, "--to", "nope", "hi"), `--to "nope" is not a peer ID`},
		{"send bad addr", append(send, "--to", testPeer, "--addr", "127.0.0.1:1", "hi"), "is not a multiaddr"},
		{"send two payloads", append(send, "--to", testPeer, "--addr", "/ip4/127.0.0.1/tcp/1", "--data-b64", "eA==", "hi"), "not both"},
		{"send bad base64", append(send, "--to", testPeer, "--addr", "/ip4/127.0.0.1/tcp/1", "--data-b64", "!!"), "not base64"},
		{"send two texts", append(send, "--to", testPeer, "a", "b"), "accepts at most 1 arg"},
		{"send dht without bootstrap", append(send, "--to", testPeer, "--dht", "hi"), "--dht needs --bootstrap"},
		{"send bootstrap without dht", append(send, "--to", testPeer, "--bootstrap", boot, "hi"), "the DHT is off"},
		{"send not allowlisted", append(send, "--to", "16Uiu2HAmRDk2UazNfSS2LveVm6iZy1ndXV4onsyA8Vmcyo3eVrU6", "--addr", "/ip4/127.0.0.1/tcp/1", "hi"), "allowlist"},
		{"send no key", []string{"send", "--standalone", "--allowlist", list, "--to", testPeer, "--addr", "/ip4/127.0.0.1/tcp/1", "hi"}, "--key"},
		{"find no bootstrap", append(find, "--peer", testPeer), "find needs --bootstrap"},
		{"find no peer", append(find, "--bootstrap", boot), "find needs --peer"},
		{"find bad peer", append(find, "--bootstrap", boot, "--peer", "nope"), `--peer "nope"`},
		{"find bad bootstrap", append(find, "--bootstrap", "/ip4/127.0.0.1/tcp/1", "--peer", testPeer), "bootstrap"},
		{"find unreachable bootstrap", append(find, "--bootstrap", boot, "--peer", testPeer, "--timeout", "300ms"), "no bootstrap peer answered"},
		{"demo one node", []string{"demo", "--nodes", "1"}, "--nodes must be between 2 and 32"},
		{"demo extra argument", []string{"demo", "now"}, "unknown command"},
		{"bench zero duration", []string{"bench", "--duration", "0s"}, "--duration must be positive"},
		{"bench negative count", []string{"bench", "--count", "-1"}, "--count must not be negative"},
		{"bench dht one node", []string{"bench", "dht", "--nodes", "1"}, "--nodes must be between 2 and 500"},
		{"run bad auto-reply", []string{"run", "--key", key, "--allowlist", list, "--auto-reply", "shout"}, `auto-reply "shout"`},
		{"run bootstrap without dht", []string{"run", "--key", key, "--allowlist", list, "--bootstrap", boot}, "the DHT is off"},
		{"run bootstrap not allowlisted", []string{"run", "--key", key, "--allowlist", list, "--dht", "--bootstrap",
			"/ip4/127.0.0.1/tcp/1/p2p/16Uiu2HAmRDk2UazNfSS2LveVm6iZy1ndXV4onsyA8Vmcyo3eVrU6"}, "not on the allowlist"},
		{"run refresh above ttl", []string{"run", "--key", key, "--allowlist", list, "--dht", "--record-ttl", "1m", "--record-refresh", "2m"}, "must be below record-ttl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, dir, tc.args...)
			oneErrorLine(t, r, tc.want)
			if r.stdout != "" {
				t.Fatalf("stdout %q", r.stdout)
			}
		})
	}
}
