package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// usageCase is one command line that must fail with a given exit code and
// a message holding want.
type usageCase struct {
	args []string
	code int
	want string
}

func checkUsage(t *testing.T, dir string, cases []usageCase) {
	t.Helper()
	for _, c := range cases {
		r := runCLI(t, dir, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("p2pnode %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), r.code, r.stderr, c.code, c.want)
		}
	}
}

// A threshold out of range is an invalid flag value (exit 2) and is named
// as such. init --threshold 0 said --threshold was missing, -1 failed with
// exit 1, and propose --threshold 9 said "give --threshold" to a command
// that gave it.
func TestMembershipThresholdOutOfRange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, idA := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	_, idC := newKey(t, dir, "c.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB, idC)
	out := filepath.Join(dir, "x.pb")
	v1 := filepath.Join(dir, "membership-1.pb")
	mustRun(t, dir, "membership", "init", "--allowlist", list, "--threshold", "2", "--out", v1)
	propose := func(extra ...string) []string {
		return append([]string{"membership", "propose", "--current", v1, "--out", out}, extra...)
	}
	checkUsage(t, dir, []usageCase{
		{[]string{"membership", "init", "--allowlist", list, "--out", out}, exitUsage, "init needs"},
		{[]string{"membership", "init", "--allowlist", list, "--threshold", "0", "--out", out}, exitUsage, "--threshold 0 is out of range: 1..3"},
		{[]string{"membership", "init", "--allowlist", list, "--threshold", "-1", "--out", out}, exitUsage, "--threshold -1 is out of range: 1..3"},
		{[]string{"membership", "init", "--allowlist", list, "--threshold", "4", "--out", out}, exitUsage, "--threshold 4 is out of range: 1..3"},
		{propose("--remove", idA, "--threshold", "9"), exitUsage, "--threshold 9 is out of range: 1..2 (the 2 members of the proposal)"},
		{propose("--edit", idA+":name=a", "--threshold", "0"), exitUsage, "--threshold 0 is out of range: 1..3"},
		{propose("--remove", idA, "--remove", idB), exitUsage, "the current threshold 2 is more than the 1 member left: give --threshold"},
	})
}

// An expiry in the past is an invalid value, as a negative duration is:
// propose --expires 2001-01-01T00:00:00Z wrote a proposal no node would
// ever accept, exit 0, without a word.
func TestMembershipExpiryInThePast(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, idA := newKey(t, dir, "a.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA)
	out := filepath.Join(dir, "x.pb")
	v1 := filepath.Join(dir, "membership-1.pb")
	mustRun(t, dir, "membership", "init", "--allowlist", list, "--threshold", "1", "--out", v1)
	const past = "2001-01-01T00:00:00Z"
	checkUsage(t, dir, []usageCase{
		{[]string{"membership", "propose", "--current", v1, "--out", out, "--expires", past}, exitUsage, `--expires "` + past + `" is not in the future`},
		{[]string{"membership", "propose", "--current", v1, "--out", out, "--expires", "-5h"}, exitUsage, "must be at least 1s"},
		// Whole seconds are kept: 1ms from now is stored as now, past.
		{[]string{"membership", "propose", "--current", v1, "--out", out, "--expires", "1ms"}, exitUsage, "must be at least 1s"},
		{[]string{"membership", "init", "--allowlist", list, "--threshold", "1", "--out", out, "--expires", past}, exitUsage, "is not in the future"},
	})
	if r := runCLI(t, dir, "membership", "show", out); r.code == 0 {
		t.Errorf("a refused command wrote %s", out)
	}
	// A time to come is still taken.
	mustRun(t, dir, "membership", "propose", "--current", v1, "--out", out, "--expires", "2999-01-01T00:00:00Z")
}
