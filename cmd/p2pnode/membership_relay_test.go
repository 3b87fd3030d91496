package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// memberRelay returns the relay setting of member id in the document file,
// as show --json prints it.
func memberRelay(t *testing.T, dir, file, id string) bool {
	t.Helper()
	var shown jsonDocument
	mustJSON(t, mustRun(t, dir, "membership", "show", file, "--json"), &shown)
	for _, m := range shown.Members {
		if m.ID == id {
			return m.Relay
		}
	}
	t.Fatalf("%s is not a member in %s", id, file)
	return false
}

// init keeps an allowlist entry's "relay: true", and propose --edit sets
// and clears it. init dropped it, and --edit knew no relay field, so an
// IP-bound member could never be admitted over a relay on a node run from
// a document (the gater refused it: relay_not_allowed).
func TestMembershipRelayPermission(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, idA := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	yaml := "peers:\n  - id: " + idA + "\n    addrs: [10.0.0.1]\n    relay: true\n  - id: " + idB + "\n    addrs: [10.0.0.2]\n"
	if err := os.WriteFile(list, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	v1 := filepath.Join(dir, "membership-1.pb")
	mustRun(t, dir, "membership", "init", "--allowlist", list, "--threshold", "2", "--out", v1)
	if !memberRelay(t, dir, v1, idA) || memberRelay(t, dir, v1, idB) {
		t.Fatalf("init: relay of a %v, b %v; want true, false", memberRelay(t, dir, v1, idA), memberRelay(t, dir, v1, idB))
	}
	// show's table says it too.
	for _, line := range strings.Split(mustRun(t, dir, "membership", "show", v1), "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && (f[0] == idA && f[4] != "yes" || f[0] == idB && f[4] != "no") {
			t.Errorf("show: %q", line)
		}
	}

	// export writes it back to an allowlist file.
	out := filepath.Join(dir, "exported.yaml")
	mustRun(t, dir, "membership", "export", v1, "--out", out)
	if data, err := os.ReadFile(out); err != nil || strings.Count(string(data), "relay: true") != 1 {
		t.Errorf("exported allowlist (%v):\n%s", err, data)
	}

	v2 := filepath.Join(dir, "membership-2.pb")
	mustRun(t, dir, "membership", "propose", "--current", v1, "--out", v2,
		"--edit", idA+":relay=false", "--edit", idB+":relay=true")
	if memberRelay(t, dir, v2, idA) || !memberRelay(t, dir, v2, idB) {
		t.Fatalf("propose --edit: relay of a %v, b %v; want false, true", memberRelay(t, dir, v2, idA), memberRelay(t, dir, v2, idB))
	}

	// A change of the relay setting alone is a change; a bad value is a
	// usage error.
	v3 := filepath.Join(dir, "membership-3.pb")
	mustRun(t, dir, "membership", "propose", "--current", v2, "--out", v3, "--edit", idA+":relay=true")
	if r := runCLI(t, dir, "membership", "propose", "--current", v3, "--out", filepath.Join(dir, "same.pb"), "--edit", idA+":relay=true"); r.code != exitUsage || !strings.Contains(r.stderr, "changes nothing") {
		t.Errorf("propose that changes nothing: %+v", r)
	}
	if r := runCLI(t, dir, "membership", "propose", "--current", v3, "--out", filepath.Join(dir, "bad.pb"), "--edit", idA+":relay=yes"); r.code != exitUsage || !strings.Contains(r.stderr, "relay must be true or false") {
		t.Errorf("propose --edit relay=yes: %+v", r)
	}
}
