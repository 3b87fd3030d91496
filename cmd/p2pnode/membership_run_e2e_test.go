package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run --membership: a node holding version 2 hands it to a node holding
// version 1 when they connect; the second applies it and, restarted on
// its data directory, starts from version 2.
func TestMembershipRunPropagates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	keyC, idC := newKey(t, dir, "c.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB, idC)
	v1 := filepath.Join(dir, "membership-1.pb")
	mustRun(t, dir, "membership", "init", "--allowlist", list, "--threshold", "2", "--out", v1)
	v2 := filepath.Join(dir, "membership-2.pb")
	mustRun(t, dir, "membership", "propose", "--current", v1, "--out", v2, "--remove", idC)
	mustRun(t, dir, "membership", "sign", v2, "--key", keyA)
	mustRun(t, dir, "membership", "sign", v2, "--key", keyC) // a removed member may sign its removal

	if r := runCLI(t, dir, "run", "--key", keyA, "--allowlist", list, "--membership", v1); r.code != exitUsage || !strings.Contains(r.stderr, "one or the other") {
		t.Fatalf("--allowlist with --membership: %+v", r)
	}

	// The handler's default: an exchange closes its connection once done,
	// and the membership session on it holds it until the session is over.
	start := func(name, key, doc string) (*proc, event) {
		p := startProc(t, name, dir, true, "run", "--json", "--key", key, "--membership", doc,
			"--data-dir", filepath.Join(dir, name+"-data"), "--listen", "/ip4/127.0.0.1/tcp/0")
		return p, p.expect("listening event", match("listening"))[0]
	}
	a, la := start("a", keyA, v2)
	b, lb := start("b", keyB, v1)
	if la.Str("membership_version") != "2" || lb.Str("membership_version") != "1" {
		t.Fatalf("listening: %v, %v", la, lb)
	}
	a.send(map[string]any{"cmd": "send", "peer": idB, "addr": firstAddr(t, lb), "data": "hello"})
	a.expect("status", match("status", "peer", idB, "ok", true))
	ev := b.expect("membership_applied", match("membership_applied", "version", 2, "from", idA))[0]
	if removed, _ := ev["removed"].([]any); len(removed) != 1 || removed[0] != idC {
		t.Fatalf("applied %v", ev)
	}
	stopAll(t, a, b)

	b, lb = start("b", keyB, v1)
	if lb.Str("membership_version") != "2" {
		t.Fatalf("restarted on its data directory at %v", lb)
	}
	stopAll(t, b)

	// The next version, unsigned, is refused over the saved version 2.
	v3 := filepath.Join(dir, "membership-3.pb")
	mustRun(t, dir, "membership", "propose", "--current", v2, "--out", v3, "--threshold", "1")
	r := runCLI(t, dir, "run", "--key", keyB, "--membership", v3, "--data-dir", filepath.Join(dir, "b-data"), "--listen", "/ip4/127.0.0.1/tcp/0")
	if r.code != exitError || !strings.Contains(r.stderr, "not a valid successor") {
		t.Fatalf("run with an unsigned next version: %+v", r)
	}
}

// A node run with --membership has no allowlist file. status shows the
// membership version whose members are its list, not a file (absPath("")
// named the working directory); allowlist reload, with nothing to read,
// fails rather than report a reload of that directory, and with --routes
// reloads the routes alone and says the allowlist was not reloaded.
func TestMembershipNodeHasNoAllowlistFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, testPeer)
	v1 := filepath.Join(dir, "membership-1.pb")
	mustRun(t, dir, "membership", "init", "--allowlist", list, "--threshold", "1", "--out", v1)
	var doc jsonDocument
	mustJSON(t, mustRun(t, dir, "membership", "show", v1, "--json"), &doc)
	routes := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routes, []byte("routes:\n  - from: \"*\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	data := filepath.Join(dir, "data")
	a := startProc(t, "a", dir, true, "run", "--json", "--key", keyA, "--membership", v1,
		"--data-dir", data, "--listen", "/ip4/127.0.0.1/tcp/0")
	a.expect("listening event", match("listening", "membership_version", 1))

	s := jsonOut(t, dir, "status", "--data-dir", data, "--json")
	al := s["allowlist"].(map[string]any)
	if al["file"] != "" || al["membership_version"] != 1.0 || al["membership_hash"] != doc.Hash || al["entries"] != 2.0 {
		t.Fatalf("status allowlist of a membership node: %v (want no file, membership version 1, hash %s)", al, doc.Hash)
	}
	text := mustRun(t, dir, "status", "--data-dir", data)
	if !strings.Contains(text, "membership version 1 ("+doc.Hash[:16]+"): 2 entries") || strings.Contains(text, dir+":") {
		t.Fatalf("status:\n%s", text)
	}

	r := runCLI(t, dir, "allowlist", "reload", "--data-dir", data)
	oneErrorLine(t, r, "has no allowlist file to reload: its allowlist is the members of membership version 1")
	if r.code != exitError || r.stdout != "" {
		t.Fatalf("allowlist reload of a membership node without routes: exit %d, stdout %q", r.code, r.stdout)
	}
	stopAll(t, a)

	// With routes, the reload reads them, and them alone.
	a = startProc(t, "a", dir, true, "run", "--json", "--key", keyA, "--membership", v1, "--routes", routes,
		"--data-dir", data, "--listen", "/ip4/127.0.0.1/tcp/0")
	a.expect("listening event", match("listening", "membership_version", 1))
	out := mustRun(t, dir, "allowlist", "reload", "--data-dir", data)
	want := "allowlist not reloaded: it is the members of membership version 1 (2 entries, revision 1); change them with p2pnode membership submit\n" +
		"reloaded " + routes + ": 1 routes\n"
	if out != want {
		t.Fatalf("allowlist reload with routes:\n got  %q\n want %q", out, want)
	}
	a.expect("the routes' reload event", match("reloaded", "kind", "routes", "file", routes, "count", 1))
	rl := jsonOut(t, dir, "allowlist", "reload", "--data-dir", data, "--json")
	if rl["file"] != "" || rl["membership_version"] != 1.0 || rl["routes_file"] != routes || rl["routes"] != 1.0 {
		t.Fatalf("allowlist reload --json with routes: %v", rl)
	}
	stopAll(t, a)
}
