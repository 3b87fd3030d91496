package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// membership submit: a version short of the threshold is refused with
// the count and the threshold; a valid one is applied by the node, which
// prints membership_applied and pushes it to the member connected to it;
// a node without --membership, or no node, is an error (exit 1).
func TestMembershipSubmit(t *testing.T) {
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
	keyD, idD := newKey(t, dir, "d.key")
	mustRun(t, dir, "membership", "sign", v2, "--key", keyD) // not a member: does not count

	if r := runCLI(t, dir, "membership", "submit"); r.code != exitUsage {
		t.Fatalf("submit without FILE: %+v", r)
	}
	if r := runCLI(t, dir, "membership", "submit", v2, "--api", filepath.Join(dir, "none.sock")); r.code != exitError ||
		!strings.Contains(r.stderr, "no running node") {
		t.Fatalf("submit with no node: %+v", r)
	}

	dataA, dataB := filepath.Join(dir, "a-data"), filepath.Join(dir, "b-data")
	start := func(name, key, data string) (*proc, event) {
		// --keep-connection: the connection the send opens carries the push.
		p := startProc(t, name, dir, true, "run", "--json", "--key", key, "--membership", v1, "--keep-connection",
			"--data-dir", data, "--listen", "/ip4/127.0.0.1/tcp/0")
		return p, p.expect("listening event", match("listening"))[0]
	}
	a, _ := start("a", keyA, dataA)
	b, lb := start("b", keyB, dataB)
	a.send(map[string]any{"cmd": "send", "peer": idB, "addr": firstAddr(t, lb), "data": "hello"})
	a.expect("status", match("status", "peer", idB, "ok", true))

	r := runCLI(t, dir, "membership", "submit", v2, "--data-dir", dataA)
	if r.code != exitError || !strings.Contains(r.stderr, "1 valid signature by members of version 1, needs 2") ||
		!strings.Contains(r.stderr, "refused") || !strings.Contains(r.stderr, idD+" is not a member of version 1") {
		t.Fatalf("submit with 1 signature of 2: %+v", r)
	}

	mustRun(t, dir, "membership", "sign", v2, "--key", keyB)
	out := mustRun(t, dir, "membership", "submit", v2, "--data-dir", dataA, "--json")
	var res struct {
		Applied bool     `json:"applied"`
		Version uint64   `json:"version"`
		Hash    string   `json:"hash"`
		Counted []string `json:"counted"`
		Needed  int      `json:"needed"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if !res.Applied || res.Version != 2 || res.Hash == "" || len(res.Counted) != 2 || slices.Contains(res.Counted, idD) || res.Needed != 2 {
		t.Fatalf("submit: %+v", res)
	}
	ev := a.expect("membership_applied", match("membership_applied", "version", 2, "hash", res.Hash))[0]
	if _, ok := ev["from"]; ok {
		t.Fatalf("applied locally with a sender: %v", ev)
	}
	b.expect("membership_applied from a", match("membership_applied", "version", 2, "hash", res.Hash, "from", idA))

	// Again: already in force.
	if r := runCLI(t, dir, "membership", "submit", v2, "--data-dir", dataB); r.code != exitError ||
		!strings.Contains(r.stderr, "already in force") {
		t.Fatalf("submit of the version in force: %+v", r)
	}
	stopAll(t, a, b)

	dataC := filepath.Join(dir, "c-data")
	c, _ := startNode(t, "c", dir, keyC, list, "--data-dir", dataC)
	if r := runCLI(t, dir, "membership", "submit", v2, "--data-dir", dataC); r.code != exitError ||
		!strings.Contains(r.stderr, "not a membership node") {
		t.Fatalf("submit to a node without --membership: %+v", r)
	}
	stopAll(t, c)
}
