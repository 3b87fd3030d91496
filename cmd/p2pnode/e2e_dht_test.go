package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bootstrap node, a second node joining through it, then find and send
// --dht, each with a key of its own, reach the second node by its peer ID
// alone.
func TestDHTFindAndSend(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	keyF, idF := newKey(t, dir, "f.key")
	keyS, idS := newKey(t, dir, "s.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB, idF, idS)

	a, la := startNode(t, "a", dir, keyA, list, "--dht", "--metrics-addr", "127.0.0.1:0")
	boot := firstAddr(t, la)
	// Alone, the bootstrap node's routing table is empty: not ready.
	readyz := "http://" + la.Str("metrics") + "/readyz"
	if code, body := httpGet(t, readyz); code != 503 || body != "not ready: dht: the routing table is empty\n" {
		t.Fatalf("/readyz of a lone DHT node: %d %q", code, body)
	}
	b, lb := startNode(t, "b", dir, keyB, list, "--dht", "--bootstrap", boot, "--auto-reply", "echo")
	addrB := firstAddr(t, lb)
	b.expect("dht ready and published", match("dht_ready"), match("published"))
	a.expect("dht ready", match("dht_ready"))
	if code, body := httpGet(t, readyz); code != 200 || body != "ok\n" {
		t.Fatalf("/readyz once the DHT is ready: %d %q", code, body)
	}

	out := mustRun(t, dir, "find", "--key", keyF, "--allowlist", list, "--bootstrap", boot, "--peer", idB)
	if l := lines(out); len(l) != 2 || !strings.HasPrefix(l[0], idB+": 1 address, record ") || l[1] != addrB {
		t.Fatalf("find printed %q, want %s", out, addrB)
	}
	var found findResult
	if err := json.Unmarshal([]byte(mustRun(t, dir, "find", "--key", keyF, "--allowlist", list, "--bootstrap", boot,
		"--peer", idB, "--json")), &found); err != nil {
		t.Fatal(err)
	}
	if found.Peer != idB || len(found.Addrs) != 1 || found.Addrs[0] != addrB || found.Source != "record" || found.Expired || found.Seq == 0 {
		t.Fatalf("find --json: %+v", found)
	}

	out = mustRun(t, dir, "send", "--standalone", "--key", keyS, "--allowlist", list, "--dht", "--bootstrap", boot, "--to", idB, "found you")
	if out != "found you\n" {
		t.Fatalf("send --dht printed %q", out)
	}
	b.expect("request", match("request", "from", idS, "data", "found you"))

	// Through the running node a, found by its key's default data
	// directory, which finds b in its DHT.
	if out := mustRun(t, dir, "send", "--key", keyA, "--to", idB, "via a"); out != "via a\n" {
		t.Fatalf("send through a printed %q", out)
	}
	b.expect("request from a", match("request", "from", idA, "data", "via a"))

	// Looking up find's own key would find find itself.
	r := runCLI(t, dir, "find", "--key", keyF, "--allowlist", list, "--bootstrap", boot, "--peer", idF)
	oneErrorLine(t, r, "--peer "+idF+" is find's own key")
	if r.code != exitUsage {
		t.Fatalf("find of its own key: exit %d", r.code)
	}
	// A key the bootstrap node does not allowlist: find says what the
	// last try met, not only that no one answered.
	keyX, idX := newKey(t, dir, "x.key")
	listX := filepath.Join(dir, "allowlist-x.yaml")
	writeAllowlist(t, listX, idA, idB, idX)
	r = runCLI(t, dir, "find", "--key", keyX, "--allowlist", listX, "--bootstrap", boot, "--peer", idB, "--timeout", "3s")
	oneErrorLine(t, r, "dht: no bootstrap peer answered within 3s; the last try: bootstrap peer "+idA+": the peer closed the connection during the handshake: it may not allowlist "+idX)
	if r.code != exitError {
		t.Fatalf("find with a key the bootstrap refuses: exit %d", r.code)
	}

	// One at a time, the bootstrap node first.
	stopAll(t, a)
	stopAll(t, b)
}

// A bootstrap node whose allowlist binds find's key to another IP refuses
// find's connection before the handshake: find says so, the IP named as
// the likely reason, as send does (it said "dial backoff").
func TestFindBootstrapRefusesIP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyF, idF := newKey(t, dir, "f.key")
	listA := filepath.Join(dir, "allowlist-a.yaml")
	if err := os.WriteFile(listA, []byte("peers:\n  - id: "+idF+"\n    addrs: [127.0.0.3]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	listF := filepath.Join(dir, "allowlist-f.yaml")
	writeAllowlist(t, listF, idA, idF)
	a := startProc(t, "a", dir, true, "run", "--json", "--key", keyA, "--allowlist", listA,
		"--listen", "/ip4/127.0.0.2/tcp/0", "--dht")
	l := a.expect("listening event", match("listening"))[0]
	addrs, _ := l["addrs"].([]any)
	if len(addrs) == 0 {
		t.Fatalf("listening event without addrs: %v", l)
	}
	boot := addrs[0].(string)

	r := runCLI(t, dir, "find", "--key", keyF, "--allowlist", listF, "--bootstrap", boot, "--peer", idA, "--timeout", "3s")
	oneErrorLine(t, r, "dht: no bootstrap peer answered within 3s; the last try: bootstrap peer "+idA+
		": the peer closed the connection before the handshake")
	if !strings.Contains(r.stderr, "it may not admit this node's IP") || !strings.Contains(r.stderr, "outlasted the peer's handshake timeout") || r.code != exitError {
		t.Fatalf("find with an IP the bootstrap refuses: exit %d: %s", r.code, r.stderr)
	}
	stopAll(t, a)
}
