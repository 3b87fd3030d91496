package main

import (
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
