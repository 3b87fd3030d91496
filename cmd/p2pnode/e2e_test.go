package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// newKey makes an identity key in dir with keygen and returns its file
// and peer ID. keygen runs in this process: newKey is called from some
// 140 places (the soak alone makes 35 keys a run), and a p2pnode process
// for each took 0.7 s under the race detector (0.4 s of CPU), most of it
// the process's start; TestKeygenAndIDAgree runs keygen as a process.
func newKey(t *testing.T, dir, name string, extra ...string) (file, id string) {
	t.Helper()
	file = filepath.Join(dir, name)
	r := runInProc(append([]string{"keygen", "--out", file}, extra...)...)
	if r.code != 0 {
		t.Fatalf("p2pnode keygen --out %s %v: exit %d: %s", file, extra, r.code, r.stderr)
	}
	return file, strings.TrimSpace(r.stdout)
}

// writeAllowlist writes an allowlist admitting ids from any IP.
func writeAllowlist(t *testing.T, path string, ids ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("peers:\n")
	for _, id := range ids {
		b.WriteString("  - id: " + id + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startNode runs "p2pnode run --json" on a loopback port and returns it
// with its listening event.
func startNode(t *testing.T, name, dir, key, allowlist string, extra ...string) (*proc, event) {
	t.Helper()
	args := append([]string{"run", "--json", "--key", key, "--allowlist", allowlist,
		"--listen", "/ip4/127.0.0.1/tcp/0"}, extra...)
	p := startProc(t, name, dir, true, args...)
	l := p.expect("listening event", match("listening"))[0]
	return p, l
}

func firstAddr(t *testing.T, l event) string {
	t.Helper()
	addrs, _ := l["addrs"].([]any)
	if len(addrs) == 0 {
		t.Fatalf("listening event without addrs: %v", l)
	}
	a := addrs[0].(string)
	if !strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") || !strings.HasSuffix(a, "/p2p/"+l.Str("peer")) {
		t.Fatalf("listening address %q", a)
	}
	return a
}

func TestKeygenAndIDAgree(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, typ := range []string{"secp256k1", "ed25519"} {
		file := filepath.Join(dir, typ+".key")
		id := strings.TrimSpace(mustRun(t, dir, "keygen", "--out", file, "--type", typ))
		if got := strings.TrimSpace(mustRun(t, dir, "id", "--key", file)); got != id {
			t.Fatalf("%s: keygen printed %s, id prints %s", typ, id, got)
		}
		st, err := os.Stat(file)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: key file mode %v, %v", typ, st.Mode(), err)
		}
		var info keyInfo
		if err := json.Unmarshal([]byte(mustRun(t, dir, "id", "--key", file, "--json")), &info); err != nil {
			t.Fatal(err)
		}
		if info.Peer != id || info.Type != typ || len(info.PubKeyHash) != 64 {
			t.Fatalf("id --json: %+v", info)
		}
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(mustRun(t, dir, "version", "--json")), &v); err != nil || v.Version == "" || v.Go == "" {
		t.Fatalf("version --json: %+v, %v", v, err)
	}
	if line, flag := mustRun(t, dir, "version"), mustRun(t, dir, "--version"); line != flag || !strings.HasPrefix(line, "p2pnode "+v.Version+" (") {
		t.Fatalf("version printed %q, --version %q", line, flag)
	}
}

// Two nodes: one sends to the other through stdin commands. A bad line gets
// an error event and the node keeps working; closing stdin stops both
// cleanly.
func TestSendBetweenTwoNodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)

	a, la := startNode(t, "a", dir, keyA, list)
	b, lb := startNode(t, "b", dir, keyB, list)
	if la.Str("peer") != idA || lb.Str("peer") != idB {
		t.Fatalf("listening as %s and %s, want %s and %s", la.Str("peer"), lb.Str("peer"), idA, idB)
	}
	addrB := firstAddr(t, lb)

	a.send("this is not json")
	if e := a.expect("error event", match("error"))[0]; !strings.Contains(e.Str("error"), "stdin line 1") {
		t.Fatalf("error event %v", e)
	}
	// A bad line that names its id: the error carries it.
	a.send(map[string]any{"cmd": "request", "data": "to whom?", "id": 9})
	if e := a.expect("error event of line 2", match("error", "id", 9))[0]; !strings.Contains(e.Str("error"), "stdin line 2") {
		t.Fatalf("error event %v", e)
	}

	a.send(map[string]any{"cmd": "send", "peer": idB, "addr": addrB, "data": "hello"})
	a.send(map[string]any{"cmd": "send", "peer": idB, "data_b64": "/wA=", "id": 42})
	a.expect("status events",
		match("status", "peer", idB, "id", 1, "ok", true, "reason", "ok"),
		match("status", "peer", idB, "id", 42, "ok", true))
	got := b.expect("data events",
		match("data", "from", idA, "data", "hello", "data_b64", "aGVsbG8="),
		match("data", "from", idA, "data_b64", "/wA="))
	if _, ok := got[1]["data"]; ok {
		t.Fatalf("binary payload has a data field: %v", got[1])
	}

	start := time.Now()
	stopAll(t, a, b)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %s to stop", d)
	}
}

// --no-stdin runs until a signal; SIGTERM stops the node with status 0.
// The metrics endpoint serves the process's collectors meanwhile.
func TestSIGTERMAndMetrics(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "a.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id)
	p := startProc(t, "a", dir, false, "run", "--json", "--no-stdin", "--key", key, "--allowlist", list,
		"--listen", "/ip4/127.0.0.1/tcp/0", "--metrics-addr", "127.0.0.1:0")
	l := p.expect("listening event", match("listening"))[0]
	metrics := l.Str("metrics")
	if !strings.HasPrefix(metrics, "127.0.0.1:") {
		t.Fatalf("listening event without metrics address: %v", l)
	}
	client := &http.Client{Timeout: waitTimeout}
	resp, err := client.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "go_goroutines") || !strings.Contains(string(body), "process_") {
		t.Fatalf("metrics: %d\n%.500s", resp.StatusCode, body)
	}

	p.signal(syscall.SIGTERM)
	if code, _ := p.wait(); code != 0 {
		t.Fatalf("exit %d after SIGTERM; stderr:\n%s", code, p.errOutput())
	}
}

// A node whose stdin is /dev/null (as a service's is) takes no commands and
// runs until a signal: it answers a send from another process meanwhile,
// and SIGTERM stops it with status 0. Also: a --config file with paths
// relative to itself, overridden by a flag, and the text output.
func TestDevNullStdinRunsUntilSIGTERM(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf")
	if err := os.Mkdir(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	_, id := newKey(t, conf, "node.key")
	keyS, idS := newKey(t, dir, "s.key")
	list := filepath.Join(conf, "allowlist.yaml")
	writeAllowlist(t, list, id, idS)
	cfg := "key: node.key\nallowlist: allowlist.yaml\nlisten: [/ip4/127.0.0.1/tcp/0]\njson: true\nlog: {level: error}\n" +
		"ephemeral: true\nhandler: {auto_reply: echo}\n"
	if err := os.WriteFile(filepath.Join(conf, "p2pnode.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Run from another directory, with --json=false overriding the file;
	// startProc without stdin gives the process /dev/null.
	p := startProc(t, "a", dir, false, "run", "--config", filepath.Join("conf", "p2pnode.yaml"), "--json=false")
	line := p.nextLine(time.After(waitTimeout), "listening line")
	want := "listening as " + id + " on /ip4/127.0.0.1/tcp/"
	if !strings.HasPrefix(line, want) {
		t.Fatalf("first line %q, want prefix %q", line, want)
	}
	addr := strings.Fields(strings.TrimPrefix(line, "listening as "+id+" on "))[0]

	if out := mustRun(t, dir, "send", "--standalone", "--key", keyS, "--allowlist", list, "--addr", addr, "still there?"); out != "still there?\n" {
		t.Fatalf("send printed %q", out)
	}
	// Still running after the exchange: its output goes on until SIGTERM.
	p.nextLine(time.After(waitTimeout), "request line")
	p.signal(syscall.SIGTERM)
	if code, _ := p.wait(); code != 0 {
		t.Fatalf("exit %d after SIGTERM; stderr:\n%s", code, p.errOutput())
	}
}

// mistypedID returns id with one character changed so that it still
// decodes as a peer ID but holds no valid key.
func mistypedID(t *testing.T, id string) string {
	t.Helper()
	const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	for i := len(id) - 10; i > 10; i-- {
		for _, c := range alphabet {
			m := id[:i] + string(c) + id[i+1:]
			p, err := peer.Decode(m)
			if m == id || err != nil {
				continue
			}
			if _, err := p.ExtractPublicKey(); err != nil {
				return m
			}
		}
	}
	t.Fatal("no one-character change of the ID gives an invalid key")
	return ""
}

// A usage mistake exits 2 in every command, run and send alike; a failure
// carrying out a well-formed command exits 1.
func TestExitCodesAgree(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "node.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id)
	send := []string{"send", "--standalone", "--key", key, "--allowlist", list, "--to", testPeer}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"run", "--key", key, "--allowlist", list, "--listen", "127.0.0.1:4200"}, exitUsage},
		{append(send, "--addr", "/ip4/127.0.0.1/tcp/1", "--listen", "127.0.0.1:4200", "x"), exitUsage},
		{[]string{"run", "--key", key, "--allowlist", list, "--listen", "/ip4/0.0.0.0/udp/1/quic-v1"}, exitUsage},
		{append(send, "--addr", "127.0.0.1:4200", "x"), exitUsage},
		{[]string{"run", "--key", key, "--allowlist", list, "--metrics-addr", "9464"}, exitUsage},
		{[]string{"run", "--key", filepath.Join(dir, "none.key"), "--allowlist", list}, exitError},
		{append(send[:3:3], filepath.Join(dir, "none.key"), "--allowlist", list, "--to", testPeer, "--addr", "/ip4/127.0.0.1/tcp/1", "x"), exitError},
	} {
		if r := runCLI(t, dir, tc.args...); r.code != tc.code {
			t.Errorf("%v: exit %d, want %d; stderr %q", tc.args, r.code, tc.code, r.stderr)
		}
	}
}

// Every user mistake is one line on stderr, "p2pnode: ...", and a non-zero
// status; nothing on stdout, no usage dump, no stack trace.
func TestUserErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "node.key")
	loose, _ := newKey(t, dir, "loose.key")
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id)
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("peers:\n  - id: "+id+"\n  - id: not-a-peer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// One character of a listed ID mistyped: it still decodes, but the key
	// inside is no point on the curve.
	typo := mistypedID(t, id)
	badKey := filepath.Join(dir, "bad-key.yaml")
	if err := os.WriteFile(badKey, []byte("peers:\n  - id: "+id+"\n  - id: "+typo+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badConf := filepath.Join(dir, "bad-conf.yaml")
	if err := os.WriteFile(badConf, []byte("key: node.key\nmax_mesage_size: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // not defer: the parallel subtests run after this function returns
	busyPort := busy.Addr().(*net.TCPAddr).Port
	run := []string{"run", "--key", key, "--allowlist", list}

	cases := []struct {
		name string
		args []string
		want string // in the message
	}{
		{"unknown command", []string{"fly"}, `unknown command "fly"`},
		{"unknown flag", []string{"id", "--kee", key}, "unknown flag: --kee"},
		{"keygen without out", []string{"keygen"}, "--out"},
		{"keygen bad type", []string{"keygen", "--out", filepath.Join(dir, "x.key"), "--type", "rsa"}, `"rsa"`},
		{"keygen existing file", []string{"keygen", "--out", key}, "already exists"},
		{"id missing key", []string{"id", "--key", filepath.Join(dir, "missing.key")}, "no such file"},
		{"id world-readable key", []string{"id", "--key", loose}, "chmod 600"},
		{"id extra argument", []string{"id", "--key", key, "extra"}, "unknown command"},
		{"run missing key", []string{"run", "--key", filepath.Join(dir, "missing.key"), "--allowlist", list}, "no such file"},
		{"run no key", []string{"run", "--allowlist", list}, "--key"},
		{"run world-readable key", []string{"run", "--key", loose, "--allowlist", list}, "chmod 600"},
		{"run bad multiaddr", append(run, "--listen", "127.0.0.1:4001"), `listen address "127.0.0.1:4001"`},
		{"run bad allowlist line", []string{"run", "--key", key, "--allowlist", bad}, bad + ": line 3:"},
		{"run missing allowlist", []string{"run", "--key", key, "--allowlist", filepath.Join(dir, "none.yaml")}, "no such file"},
		// Ephemeral: run in parallel on one key, both would want its data
		// directory, and one would fail with "in use" instead.
		{"run port in use", append(run, "--ephemeral", "--listen", "/ip4/127.0.0.1/tcp/"+itoa(busyPort)), "address already in use"},
		{"run metrics port in use", append(run, "--ephemeral", "--metrics-addr", busy.Addr().String()), "address already in use"},
		{"run data dir and ephemeral", append(run, "--ephemeral", "--data-dir", dir), "give one of --data-dir and --ephemeral"},
		// "outbox list" with no directory at all: TestStoreCommandsFindDefaultNode
		// (the nodes of the other tests share the default directories).
		{"outbox list no store", []string{"outbox", "list", "--data-dir", filepath.Join(dir, "nothing")}, "no store in"},
		{"outbox list data dir a file", []string{"outbox", "list", "--data-dir", key}, "data directory " + key + " is not a directory"},
		{"outbox drop no id", []string{"outbox", "drop", "--data-dir", dir}, "requires at least 1 arg"},
		{"outbox drop bad id", []string{"outbox", "drop", "--data-dir", dir, "xyz"}, `"xyz" is not an exchange ID`},
		{"deadletters retry short id", []string{"deadletters", "retry", "--data-dir", dir, "123"}, `"123" is not an exchange ID (want the 16 hex digits`},
		{"deadletters retry ids and all", []string{"deadletters", "retry", "--data-dir", dir, "--all", "00000000000000ab"}, "not both"},
		{"deadletters drop nothing", []string{"deadletters", "drop", "--data-dir", dir}, "or --all"},
		{"deadletters list extra argument", []string{"deadletters", "list", "--data-dir", dir, "x"}, "unknown command"},
		{"run bad config", []string{"run", "--config", badConf}, `line 2: unknown key "max_mesage_size"`},
		{"run negative size", append(run, "--max-message-size", "-1"), "must not be negative"},
		{"run bad duration", append(run, "--ack-timeout", "soon"), "--ack-timeout"},
		{"run ack delay too long", append(run, "--ack-delay", "1s"), "ack-delay must be at most 100ms"},
		{"run stream idle too short", append(run, "--stream-idle-timeout", "1ms"), "stream-idle-timeout must be at least 10ms"},
		{"run bad log level", append(run, "--log-level", "loud"), `"loud"`},
		{"allowlist check bad line", []string{"allowlist", "check", bad}, "line 3:"},
		{"allowlist add bad id", []string{"allowlist", "add", list, "--id", "nope"}, `"nope" is not a peer ID`},
		{"allowlist add bad addr", []string{"allowlist", "add", list, "--id", id, "--addr", "10.0.0.300"}, `"10.0.0.300"`},
		{"allowlist add to broken file", []string{"allowlist", "add", bad, "--id", id}, "line 3:"},
		{"allowlist remove absent", []string{"allowlist", "remove", list, "--id", testPeer}, "is not in"},
		{"allowlist list missing", []string{"allowlist", "list", filepath.Join(dir, "none.yaml")}, "no such file"},
		{"allowlist unknown subcommand", []string{"allowlist", "purge", list}, `unknown command "purge"`},
		{"config check bad", []string{"config", "check", badConf}, "line 2:"},
		{"id directory as key", []string{"id", "--key", dir}, "not a key file (a directory)"},
		{"id allowlist as key", []string{"id", "--key", list}, "not a key file"},
		{"allowlist check bad key", []string{"allowlist", "check", badKey}, "line 3:"},
		{"allowlist add bad key", []string{"allowlist", "add", list, "--id", typo}, "public key inside does not decode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, dir, tc.args...)
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			if r.code == 0 || len(lines) != 1 || !strings.HasPrefix(lines[0], "p2pnode: ") ||
				!strings.Contains(lines[0], tc.want) || r.stdout != "" {
				t.Fatalf("exit %d\nstdout: %q\nstderr: %q\nwant one line containing %q", r.code, r.stdout, r.stderr, tc.want)
			}
		})
	}
}

func TestAllowlistCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, idA := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key", "--type", "ed25519")
	file := filepath.Join(dir, "allowlist.yaml")

	if out := mustRun(t, dir, "allowlist", "add", file, "--id", idA, "--name", "alice"); !strings.Contains(out, "added "+idA) {
		t.Fatalf("add: %q", out)
	}
	mustRun(t, dir, "allowlist", "add", file, "--id", idB, "--addr", "127.0.0.2", "--addr", "10.1.0.0/16")
	var edit map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, dir, "allowlist", "add", file, "--id", idA, "--name", "alice-2", "--json")), &edit); err != nil {
		t.Fatal(err)
	}
	if edit["action"] != "updated" || edit["peers"] != 2.0 {
		t.Fatalf("update: %v", edit)
	}

	var listed struct {
		Peers []jsonEntry `json:"peers"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "allowlist", "list", file, "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	byID := map[string]jsonEntry{}
	for _, e := range listed.Peers {
		byID[e.ID] = e
	}
	if len(byID) != 2 || byID[idA].Name != "alice-2" || len(byID[idA].Addrs) != 0 ||
		strings.Join(byID[idB].Addrs, ",") != "127.0.0.2,10.1.0.0/16" {
		t.Fatalf("list: %+v", listed)
	}
	table := mustRun(t, dir, "allowlist", "list", file)
	if !strings.HasPrefix(table, "ID") || !strings.Contains(table, "alice-2") || !strings.Contains(table, "127.0.0.2,10.1.0.0/16") {
		t.Fatalf("table:\n%s", table)
	}
	if out := mustRun(t, dir, "allowlist", "check", file); !strings.HasPrefix(out, file+": ok, 2 peers, digest ") {
		t.Fatalf("check: %q", out)
	}

	mustRun(t, dir, "allowlist", "remove", file, "--id", idA)
	var check map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, dir, "allowlist", "check", file, "--json")), &check); err != nil {
		t.Fatal(err)
	}
	if check["ok"] != true || check["peers"] != 1.0 {
		t.Fatalf("check --json: %v", check)
	}
	if out := mustRun(t, dir, "allowlist", "list", file); strings.Contains(out, idA) || !strings.Contains(out, idB) {
		t.Fatalf("after remove:\n%s", out)
	}

	routes := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routes, []byte("routes:\n  - from: \"*\"\n    to_channel: 1\n  - from: "+idB+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, dir, "allowlist", "check", "--routes", routes); out != routes+": ok, 2 routes\n" {
		t.Fatalf("check --routes: %q", out)
	}
}

// SIGHUP reloads the allowlist: a peer taken off it is disconnected; a file
// that does not parse gives an error event naming file and line, and the
// node carries on.
func TestReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyR, idR := newKey(t, dir, "r.key")
	keyS, idS := newKey(t, dir, "s.key")
	listR, listS := filepath.Join(dir, "r.yaml"), filepath.Join(dir, "s.yaml")
	writeAllowlist(t, listR, idR, idS)
	writeAllowlist(t, listS, idR)

	routes := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routes, []byte("routes:\n  - from: \"*\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	r, lr := startNode(t, "receiver", dir, keyR, listR, "--routes", routes)
	s, _ := startNode(t, "sender", dir, keyS, listS)
	addrR := firstAddr(t, lr)

	s.send(map[string]any{"cmd": "send", "addr": addrR, "data": "one"})
	s.expect("status", match("status", "id", 1, "ok", true))
	r.expect("connection and data", match("connected", "peer", idS), match("data", "from", idS, "data", "one"))

	writeAllowlist(t, listR, idR)
	r.signal(syscall.SIGHUP)
	r.expect("reload and disconnection", match("reloaded", "kind", "allowlist", "count", 1),
		match("reloaded", "kind", "routes", "file", routes, "count", 1), match("disconnected", "peer", idS))

	if err := os.WriteFile(listR, []byte("peers:\n  - id: "+idR+"\n  - name: no id\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.signal(syscall.SIGHUP)
	e := r.expect("reload error", match("error"))[0]
	if msg := e.Str("error"); !strings.Contains(msg, listR) || !strings.Contains(msg, "line 3") {
		t.Fatalf("reload error does not name file and line: %q", msg)
	}

	// Still running: a repaired file is taken, and the sender gets through.
	writeAllowlist(t, listR, idR, idS)
	r.signal(syscall.SIGHUP)
	r.expect("reload", match("reloaded", "kind", "allowlist", "count", 2))
	s.send(map[string]any{"cmd": "send", "addr": addrR, "data": "two"})
	s.expect("status", match("status", "id", 2, "ok", true))
	r.expect("data", match("data", "from", idS, "data", "two"))

	stopAll(t, r, s)
}

// --watch reloads the allowlist when it changes on disk, here through
// "allowlist add" (which replaces the file by renaming a new one over it).
// A file that became empty is an error that keeps the list, unless it says
// allow_empty: true.
func TestWatchReloads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "a.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id)
	p, _ := startNode(t, "a", dir, key, list, "--watch")
	mustRun(t, dir, "allowlist", "add", list, "--id", testPeer)
	p.expect("reload", match("reloaded", "kind", "allowlist", "file", list, "count", 2))

	// Truncated: an error, and the two peers stay in force.
	if err := os.Truncate(list, 0); err != nil {
		t.Fatal(err)
	}
	e := p.expect("reload error", match("error"))[0]
	if msg := e.Str("error"); !strings.Contains(msg, "lists no peers: keeping the 2 peers in force") || !strings.Contains(msg, "allow_empty: true") {
		t.Fatalf("reload error %q", msg)
	}
	// Emptied on purpose.
	if err := os.WriteFile(list, []byte("allow_empty: true\npeers: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.expect("reload to empty", match("reloaded", "kind", "allowlist", "file", list, "count", 0))
	stopAll(t, p)
}
