package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// verify's text output lists the signatures that count, as its help and
// docs/membership.md say (only --json listed them), and says "1 valid
// signature", not "1 valid signatures".
func TestMembershipVerifyListsCounted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	v1 := filepath.Join(dir, "membership-1.pb")
	mustRun(t, dir, "membership", "init", "--allowlist", list, "--threshold", "1", "--out", v1)
	v2 := filepath.Join(dir, "membership-2.pb")
	mustRun(t, dir, "membership", "propose", "--current", v1, "--out", v2, "--edit", idA+":name=alice", "--threshold", "2")
	mustRun(t, dir, "membership", "sign", v2, "--key", keyA)
	out := mustRun(t, dir, "membership", "verify", v2, "--current", v1)
	if !strings.Contains(out, "counts: "+idA+"\n") || !strings.Contains(out, ": 1 valid signature by its members, 1 needed") {
		t.Errorf("verify:\n%s", out)
	}

	// Version 3 needs 2 of version 2's members; A's signature alone
	// falls short, and the error counts it in the singular too.
	v3 := filepath.Join(dir, "membership-3.pb")
	mustRun(t, dir, "membership", "propose", "--current", v2, "--out", v3, "--edit", idB+":name=bob")
	mustRun(t, dir, "membership", "sign", v3, "--key", keyA)
	r := runCLI(t, dir, "membership", "verify", v3, "--current", v2)
	if r.code != exitError || !strings.Contains(r.stdout, "counts: "+idA+" (alice)\n") ||
		!strings.Contains(r.stdout, "1 valid signature by its members, 2 needed") ||
		!strings.Contains(r.stderr, "has 1 valid signature by members of version 2, needs 2") {
		t.Errorf("verify short of signatures: %+v", r)
	}
}

// Help texts that described what the program no longer does, or a flag
// the command does not have.
func TestMembershipHelpTexts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if out := mustRun(t, dir, "membership", "export", "--help"); strings.Contains(out, "until nodes apply") {
		t.Errorf("export --help still says nodes do not apply documents themselves:\n%s", out)
	}
	for _, line := range strings.Split(mustRun(t, dir, "find", "--help"), "\n") {
		if strings.Contains(line, "--membership FILE") && strings.Contains(line, "--dht") {
			t.Errorf("find has no --dht flag, but its --membership help names it: %q", line)
		}
	}
}
