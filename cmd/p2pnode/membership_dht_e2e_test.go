package main

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// run --dht --membership: the nodes publish records sealed to the members.
// find with the membership document (a member's key) reads them; find with
// a YAML allowlist of the same peers, which does not hold the document,
// cannot use them.
func TestMembershipDHTRecordsSealed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	keyF, idF := newKey(t, dir, "f.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB, idF)
	v1 := filepath.Join(dir, "membership-1.pb")
	mustRun(t, dir, "membership", "init", "--allowlist", list, "--threshold", "2", "--out", v1)

	start := func(name, key string, extra ...string) (*proc, event) {
		args := append([]string{"run", "--json", "--key", key, "--membership", v1, "--dht", "--ephemeral",
			"--listen", "/ip4/127.0.0.1/tcp/0"}, extra...)
		p := startProc(t, name, dir, true, args...)
		return p, p.expect("listening event", match("listening"))[0]
	}
	a, la := start("a", keyA)
	boot := firstAddr(t, la)
	b, lb := start("b", keyB, "--bootstrap", boot)
	addrB := firstAddr(t, lb)
	b.expect("dht ready and published", match("dht_ready"), match("published"))

	var found findResult
	out := mustRun(t, dir, "find", "--key", keyF, "--membership", v1, "--bootstrap", boot, "--peer", idB, "--json")
	if err := json.Unmarshal([]byte(out), &found); err != nil {
		t.Fatal(err)
	}
	if found.Peer != idB || len(found.Addrs) != 1 || found.Addrs[0] != addrB || found.Source != "record" {
		t.Fatalf("find --membership: %+v", found)
	}

	// Without the document the record is refused (sealed, format 2); find
	// falls back on FindPeer, which connects to b.
	found = findResult{}
	out = mustRun(t, dir, "find", "--key", keyF, "--allowlist", list, "--bootstrap", boot, "--peer", idB, "--json")
	if err := json.Unmarshal([]byte(out), &found); err != nil {
		t.Fatal(err)
	}
	if found.Source == "record" {
		t.Fatalf("a tool without the membership document read a sealed record: %+v", found)
	}
	stopAll(t, a)
	stopAll(t, b)
}
