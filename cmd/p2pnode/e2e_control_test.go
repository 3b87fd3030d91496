package main

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// End-to-end tests of the control API: the commands that use a running
// node through its socket, without a key of their own, and the health
// endpoints.

// writeNamedAllowlist writes an allowlist admitting each id (from any IP)
// under its name.
func writeNamedAllowlist(t *testing.T, path string, idName ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("peers:\n")
	for i := 0; i+1 < len(idName); i += 2 {
		b.WriteString("  - id: " + idName[i] + "\n    name: " + idName[i+1] + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// jsonOut runs p2pnode, which must succeed, and decodes its JSON output.
func jsonOut(t *testing.T, dir string, args ...string) map[string]any {
	t.Helper()
	out := mustRun(t, dir, args...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("p2pnode %v: %v: %q", args, err, out)
	}
	return m
}

// httpGet returns the status and body of GET url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// send, request, peers, status, allowlist reload and the store lists all
// reach the running node through its socket: no key, no allowlist, while
// the node holds its store. The socket is the node user's alone.
func TestControlAPICommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeNamedAllowlist(t, list, idA, "alice", idB, "bob")
	data := filepath.Join(dir, "data")
	sock := filepath.Join(data, "control.sock")

	b, lb := startNode(t, "b", dir, keyB, list, "--auto-reply", "echo")
	addrB := firstAddr(t, lb)
	a, la := startNode(t, "a", dir, keyA, list, "--data-dir", data, "--metrics-addr", "127.0.0.1:0")
	if la.Str("api") != sock {
		t.Fatalf("listening event %v: want api %s", la, sock)
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 || int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid() {
		t.Fatalf("control socket: mode %v, owner %d:%d; want a socket, 0600, %d:%d", fi.Mode(), st.Uid, st.Gid, os.Getuid(), os.Getgid())
	}

	// Health.
	metrics := "http://" + la.Str("metrics")
	if code, body := httpGet(t, metrics+"/livez"); code != 200 || body != "ok\n" {
		t.Fatalf("/livez: %d %q", code, body)
	}
	if code, body := httpGet(t, metrics+"/readyz"); code != 200 || body != "ok\n" {
		t.Fatalf("/readyz: %d %q", code, body)
	}

	// send and request through the node: its key, its events.
	if out := mustRun(t, dir, "send", "--data-dir", data, "--to", idB, "--addr", addrB, "hello via a"); out != "hello via a\n" {
		t.Fatalf("send printed %q", out)
	}
	b.expect("the request, from a", match("request", "from", idA, "data", "hello via a"))
	a.expect("a's reply and exchange events", match("reply", "from", idB, "data", "hello via a"),
		match("exchange", "peer", idB, "kind", "request", "role", "dialer", "ok", true))
	reply := jsonOut(t, dir, "request", "--api", sock, "--to", idB, "--json", "--data-b64", "/wA=")
	if reply["event"] != "reply" || reply["from"] != idB || reply["data_b64"] != "/wA=" {
		t.Fatalf("request --json: %v", reply)
	}
	if out := mustRun(t, dir, "send", "--data-dir", data, "--to", idB, "--no-reply", "note"); !strings.HasPrefix(out, "acknowledged by "+idB) {
		t.Fatalf("send --no-reply printed %q", out)
	}
	b.expect("the note", match("data", "from", idA, "data", "note"))

	// A refused exchange fails send, naming the reason.
	r := runCLI(t, dir, "send", "--data-dir", data, "--to", testPeer, "--addr", "/ip4/127.0.0.1/tcp/1", "--timeout", "5s", "x")
	if r.code != exitError || !strings.Contains(r.stderr, "send to "+testPeer) {
		t.Fatalf("send to an unlisted peer: exit %d, stderr %q", r.code, r.stderr)
	}

	peers := jsonOut(t, dir, "peers", "--data-dir", data, "--json")["peers"].([]any)
	if len(peers) != 1 {
		t.Fatalf("peers %v: want bob alone (a is not its own peer)", peers)
	}
	p := peers[0].(map[string]any)
	if p["peer"] != idB || p["name"] != "bob" || p["allowlisted"] != true || p["last_exchange"] == nil || p["banned"] != false {
		t.Fatalf("peer %v", p)
	}
	if text := mustRun(t, dir, "peers", "--data-dir", data); !strings.Contains(text, idB) || !strings.Contains(text, "bob") {
		t.Fatalf("peers:\n%s", text)
	}

	s := jsonOut(t, dir, "status", "--data-dir", data, "--json")
	al, store := s["allowlist"].(map[string]any), s["store"].(map[string]any)
	if s["peer"] != idA || s["data_dir"] != data || s["api"] != sock || store["enabled"] != true || store["size_bytes"].(float64) <= 0 ||
		al["entries"] != 2.0 || al["version"] != 1.0 || len(al["digest"].(string)) != 64 {
		t.Fatalf("status %v", s)
	}
	if text := mustRun(t, dir, "status", "--api", sock); !strings.Contains(text, idA) || !strings.Contains(text, "allowlist") {
		t.Fatalf("status:\n%s", text)
	}

	// The store's lists, while the node holds the store.
	if ob := storeList(t, dir, "outbox", "--data-dir", data); len(ob) != 0 {
		t.Fatalf("outbox of an idle node: %v", ob)
	}
	if dl := storeList(t, dir, "deadletters", "--data-dir", data); len(dl) != 0 {
		t.Fatalf("dead letters after a refusal of a peer not allowlisted: %v", dl)
	}

	// A reload, with the node's event.
	writeNamedAllowlist(t, list, idA, "alice", idB, "bob", testPeer, "carol")
	rl := jsonOut(t, dir, "allowlist", "reload", "--data-dir", data, "--json")
	if rl["entries"] != 3.0 || rl["version"] != 2.0 {
		t.Fatalf("allowlist reload: %v", rl)
	}
	a.expect("the reload event", match("reloaded", "kind", "allowlist", "count", 3))

	// The node stopped, the socket is gone and the commands say so.
	stopAll(t, a)
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("control socket left after the node stopped: %v", err)
	}
	for _, args := range [][]string{
		{"status", "--data-dir", data}, {"peers", "--api", sock}, {"allowlist", "reload", "--data-dir", data},
		{"send", "--data-dir", data, "--to", idB, "hi"},
	} {
		r := runCLI(t, dir, args...)
		oneErrorLine(t, r, "no running node at "+sock+`; start the node with "p2pnode run"`)
		if r.code != exitError {
			t.Fatalf("%v: exit %d", args, r.code)
		}
	}
	// The lists read a stopped node's store directly.
	if ob := storeList(t, dir, "outbox", "--data-dir", data); len(ob) != 0 {
		t.Fatalf("outbox of the stopped node: %v", ob)
	}
	stopAll(t, b)
}

// Flags that configure send's own node need --standalone; without a
// running node and without --standalone, send says how to start one.
func TestSendNeedsNodeOrStandalone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "node.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id, testPeer)
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"send", "--key", key, "--allowlist", list, "--to", testPeer, "hi"}, "--allowlist configures a node of send's own: give --standalone", exitUsage},
		{[]string{"send", "--key", key, "--to", testPeer, "hi"}, "no running node at ", exitError},
		{[]string{"send", "--standalone", "--data-dir", dir, "--key", key, "--allowlist", list, "--to", testPeer, "hi"}, "--api and --data-dir name a running node", exitUsage},
		{[]string{"status", "--data-dir", dir}, "no running node at " + filepath.Join(dir, "control.sock"), exitError},
	} {
		r := runCLI(t, dir, tc.args...)
		oneErrorLine(t, r, tc.want)
		if r.code != tc.code {
			t.Fatalf("%v: exit %d, want %d", tc.args, r.code, tc.code)
		}
	}
}

// A second node on the same socket is refused; a socket left by a killed
// node is replaced.
func TestControlSocketInUseAndStale(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	sock := filepath.Join(dir, "p2p.sock")

	a, _ := startNode(t, "a", dir, keyA, list, "--ephemeral", "--api", sock)
	r := runCLI(t, dir, "run", "--key", keyB, "--allowlist", list, "--ephemeral", "--api", sock, "--no-stdin")
	oneErrorLine(t, r, "another p2pnode serves "+sock)
	a.kill()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("a killed node leaves its socket (for this test to mean anything): %v", err)
	}
	b, _ := startNode(t, "b", dir, keyB, list, "--ephemeral", "--api", sock)
	if s := jsonOut(t, dir, "status", "--api", sock, "--json"); s["peer"] != idB {
		t.Fatalf("status after replacing the stale socket: %v", s)
	}
	if r := runCLI(t, dir, "outbox", "list", "--api", sock); r.code == 0 || !strings.Contains(r.stderr, "ephemeral") {
		t.Fatalf("outbox list of an ephemeral node: exit %d, %q", r.code, r.stderr)
	}
	stopAll(t, b)
}

// A second run given the --api socket another node serves is refused
// before it starts anything: before its listen address and metrics port
// are bound, so before its handler could resume the exchanges of its own
// data directory. It was refused only once its handler ran (here: the
// busy port failed it first). The socket is the other node's and stays;
// a run that bound the socket and then failed removes it.
func TestControlSocketRefusedBeforeStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id)
	// Another node's socket: connections to it succeed (the backlog),
	// which is what tells a live socket from a stale one.
	sock := filepath.Join(dir, "p2p.sock")
	other, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	busyListen := "/ip4/127.0.0.1/tcp/" + itoa(busy.Addr().(*net.TCPAddr).Port)
	data := filepath.Join(dir, "data-b")

	r := runCLI(t, dir, "run", "--key", key, "--allowlist", list, "--data-dir", data, "--api", sock, "--no-stdin",
		"--listen", busyListen, "--metrics-addr", busy.Addr().String())
	oneErrorLine(t, r, "control socket in use: another p2pnode serves "+sock)
	if r.code != exitError || r.stdout != "" {
		t.Fatalf("refused run: exit %d, stdout %q; want exit %d and nothing printed", r.code, r.stdout, exitError)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("the other node's socket after the refusal: %v, %v", fi, err)
	}

	// The socket bound, the node fails to start: the socket goes.
	own := filepath.Join(dir, "own.sock")
	r = runCLI(t, dir, "run", "--key", key, "--allowlist", list, "--data-dir", data, "--api", own, "--no-stdin",
		"--listen", busyListen)
	oneErrorLine(t, r, "address already in use")
	if _, err := os.Lstat(own); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the socket of a run that failed to start: %v, want it removed", err)
	}
}

// A node run with relative allowlist and routes paths names them absolute
// in every reload message: the control API's reply, ok or failed, and the
// node's events. A failed reload said "allowlist: al.yaml: line 3", relative
// to the node's working directory, while a successful one said "reloaded
// /abs/al.yaml"; the node's reloaded event said "al.yaml".
func TestReloadNamesFilesAbsolute(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "a.key")
	list, routes := filepath.Join(dir, "al.yaml"), filepath.Join(dir, "routes.yaml")
	writeAllowlist(t, list, id)
	if err := os.WriteFile(routes, []byte("routes:\n  - from: \"*\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "a.sock")
	a, _ := startNode(t, "a", dir, key, "al.yaml", "--routes", "routes.yaml", "--ephemeral", "--api", sock)
	// The CLI runs elsewhere: a relative name would point nowhere from there.
	elsewhere := filepath.Join(dir, "elsewhere")
	if err := os.Mkdir(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}

	if out := mustRun(t, elsewhere, "allowlist", "reload", "--api", sock); !strings.Contains(out, "reloaded "+list+":") ||
		!strings.Contains(out, "reloaded "+routes+":") {
		t.Fatalf("allowlist reload: %q; want %s and %s named", out, list, routes)
	}
	a.expect("the reloaded events", match("reloaded", "kind", "allowlist", "file", list),
		match("reloaded", "kind", "routes", "file", routes))

	if err := os.WriteFile(list, []byte("peers:\n  - id: "+id+"\n  - name: no id\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, elsewhere, "allowlist", "reload", "--api", sock)
	if r.code != exitError || !strings.Contains(r.stderr, "allowlist: "+list+": line 3") {
		t.Fatalf("failed allowlist reload: exit %d, stderr %q; want exit %d naming %s: line 3", r.code, r.stderr, exitError, list)
	}
	e := a.expect("the reload error", match("error"))[0]
	if msg := e.Str("error"); !strings.Contains(msg, "allowlist: "+list+": line 3") {
		t.Fatalf("reload error event %q does not name %s", msg, list)
	}
	stopAll(t, a)
}

// check --peer with a well-formed ID the node cannot check fails with exit
// 1, saying why: a peer not on the allowlist (as send to it does), or the
// node itself, even when its shared allowlist lists it. Both were exit 2,
// "invalid request: ... is not on the allowlist"; a malformed ID stays a
// usage mistake.
func TestCheckPeerNotCheckable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "a.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id)
	sock := filepath.Join(dir, "a.sock")
	a, _ := startNode(t, "a", dir, key, list, "--ephemeral", "--api", sock)
	for _, tc := range []struct {
		peer, want string
		code       int
	}{
		{testPeer, "p2pnode: peer " + testPeer + " is not on the node's allowlist", exitError},
		{id, "p2pnode: peer " + id + " is this node", exitError},
		{"16Uiu2HAmNotAPeer", `--peer "16Uiu2HAmNotAPeer" is not a peer ID`, exitUsage},
	} {
		r := runCLI(t, dir, "check", "--api", sock, "--peer", tc.peer)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
			t.Errorf("check --peer %s: %+v; want exit %d and one line with %q", tc.peer, r, tc.code, tc.want)
		}
	}
	stopAll(t, a)
}
