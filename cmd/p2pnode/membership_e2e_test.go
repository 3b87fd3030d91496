package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The operators' flow with the real binary: init from an allowlist, propose
// a change, three operators sign their own copies offline, combine, verify
// (refused with two signatures, accepted with three), show.
func TestMembershipCLIFlow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, idA := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key", "--type", "ed25519")
	_, idC := newKey(t, dir, "c.key")
	_, idD := newKey(t, dir, "d.key")
	_, idE := newKey(t, dir, "e.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB, idC, idD)

	v1 := filepath.Join(dir, "membership-1.pb")
	var g jsonDocument
	mustJSON(t, mustRun(t, dir, "membership", "init", "--allowlist", list, "--threshold", "3", "--out", v1, "--json"), &g)
	if g.Version != 1 || g.Threshold != 3 || len(g.Members) != 4 || g.Prev != "" || len(g.Hash) != 64 {
		t.Fatalf("init: %+v", g)
	}
	if r := runCLI(t, dir, "membership", "init", "--allowlist", list, "--threshold", "3", "--out", v1); r.code != exitError || !strings.Contains(r.stderr, v1) {
		t.Fatalf("init over an existing file: %+v", r)
	}
	if out := mustRun(t, dir, "membership", "verify", v1); !strings.Contains(out, "valid") {
		t.Fatalf("verify genesis: %q", out)
	}

	// Version 2 adds E with an IP binding and removes D.
	prop := filepath.Join(dir, "proposal.pb")
	var p jsonDocument
	mustJSON(t, mustRun(t, dir, "membership", "propose", "--current", v1, "--out", prop, "--json",
		"--add", idE+",erin", "--edit", idE+":addrs=127.0.0.5,10.1.0.0/16", "--edit", idA+":role=verifier", "--remove", idD), &p)
	if p.Version != 2 || p.Prev != g.Hash || p.Threshold != 3 || len(p.Signatures) != 0 {
		t.Fatalf("propose: %+v", p)
	}
	ids := []string{}
	for _, m := range p.Members {
		ids = append(ids, m.ID)
		if m.ID == idE && (m.Name != "erin" || strings.Join(m.Addrs, ",") != "10.1.0.0/16,127.0.0.5") {
			t.Errorf("new member: %+v", m)
		}
	}
	if slices.Contains(ids, idD) || !slices.Contains(ids, idE) || len(ids) != 4 {
		t.Fatalf("members %v", ids)
	}

	// Each operator signs a copy of its own: A, B, and D (whose signature
	// counts toward its own removal).
	copies := map[string]string{}
	for _, who := range []string{"a", "b", "d"} {
		c := filepath.Join(dir, who+"-proposal.pb")
		data, err := os.ReadFile(prop)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(c, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if out := mustRun(t, dir, "membership", "sign", c, "--key", filepath.Join(dir, who+".key")); !strings.Contains(out, "hash "+p.Hash) {
			t.Fatalf("sign: %q", out)
		}
		copies[who] = c
	}
	if r := runCLI(t, dir, "membership", "sign", copies["a"], "--key", filepath.Join(dir, "a.key")); r.code != exitError || !strings.Contains(r.stderr, "already signed") {
		t.Fatalf("second signature by one key: %+v", r)
	}

	two := filepath.Join(dir, "two.pb")
	mustRun(t, dir, "membership", "combine", "--out", two, copies["a"], copies["b"])
	r := runCLI(t, dir, "membership", "verify", two, "--current", v1)
	if r.code != exitError || !strings.Contains(r.stdout, "NOT valid") || !strings.Contains(r.stderr, "2 valid signatures") {
		t.Fatalf("verify with 2 of 3: %+v", r)
	}

	v2 := filepath.Join(dir, "membership-2.pb")
	mustRun(t, dir, "membership", "combine", "--out", v2, copies["a"], copies["b"], copies["d"])
	var verdict struct {
		Valid   bool     `json:"valid"`
		Counted []string `json:"counted"`
		Needed  int      `json:"needed"`
	}
	mustJSON(t, mustRun(t, dir, "membership", "verify", v2, "--current", v1, "--json"), &verdict)
	if !verdict.Valid || len(verdict.Counted) != 3 || verdict.Needed != 3 || !slices.Contains(verdict.Counted, idD) {
		t.Fatalf("verify: %+v", verdict)
	}
	if out := mustRun(t, dir, "membership", "verify", v2, "--current", v1); !strings.Contains(out, v2+": valid") {
		t.Fatalf("verify: %q", out)
	}

	var shown jsonDocument
	mustJSON(t, mustRun(t, dir, "membership", "show", v2, "--json"), &shown)
	if shown.Hash != p.Hash || len(shown.Signatures) != 3 {
		t.Fatalf("show: %+v", shown)
	}
	if text := mustRun(t, dir, "membership", "show", v2); !strings.Contains(text, "version:    2") || !strings.Contains(text, "erin") ||
		!strings.Contains(text, "verifier") || !strings.Contains(text, "3 signatures") {
		t.Fatalf("show:\n%s", text)
	}

	// export writes a valid version's members as the allowlist a node
	// reloads, and refuses an invalid one without touching the file.
	exported := filepath.Join(dir, "exported.yaml")
	if r := runCLI(t, dir, "membership", "export", two, "--current", v1, "--out", exported); r.code != exitError || !strings.Contains(r.stderr, "not valid") {
		t.Fatalf("export of an invalid version: %+v", r)
	}
	if _, err := os.Stat(exported); err == nil {
		t.Fatal("an invalid version was exported")
	}
	mustRun(t, dir, "membership", "export", v2, "--current", v1, "--out", exported)
	var listed struct {
		Peers []jsonEntry `json:"peers"`
	}
	mustJSON(t, mustRun(t, dir, "allowlist", "list", exported, "--json"), &listed)
	if len(listed.Peers) != 4 || !slices.ContainsFunc(listed.Peers, func(e jsonEntry) bool { return e.ID == idE && len(e.Addrs) == 2 }) {
		t.Fatalf("exported allowlist: %+v", listed)
	}

	// Replaying version 1 over version 2 is refused, and so is combining
	// copies of different proposals; bad input names the file.
	if r := runCLI(t, dir, "membership", "verify", v1, "--current", v2); r.code != exitError || !strings.Contains(r.stderr, "not newer") {
		t.Fatalf("replay: %+v", r)
	}
	if r := runCLI(t, dir, "membership", "combine", "--out", filepath.Join(dir, "x.pb"), v2, v1); r.code != exitError || !strings.Contains(r.stderr, v1) {
		t.Fatalf("combine different: %+v", r)
	}
	if r := runCLI(t, dir, "membership", "show", list); r.code != exitError || !strings.Contains(r.stderr, list) {
		t.Fatalf("show a YAML file: %+v", r)
	}
	for _, args := range [][]string{
		{"membership", "propose", "--current", v2, "--out", filepath.Join(dir, "y.pb"), "--remove", idD},
		{"membership", "propose", "--current", v2, "--out", filepath.Join(dir, "y.pb"), "--edit", idA + ":colour=red"},
		{"membership", "propose", "--current", v2, "--out", filepath.Join(dir, "y.pb")},
		{"membership", "init", "--allowlist", list},
	} {
		if r := runCLI(t, dir, args...); r.code != exitUsage || r.stderr == "" {
			t.Errorf("%v: %+v", args, r)
		}
	}
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v: %q", err, s)
	}
}
