package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// allowlist check prints the digest status shows for a node running on the
// file (operations.md says to compare the two); it printed only the count.
// The file is hand-written, with a comment and its peers out of order: the
// digest is of the entries, not of the bytes.
func TestAllowlistCheckDigestIsStatus(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	body := "# hand-written\npeers:\n  - id: " + idB + "\n    name: bob\n  - id: " + idA + "\n    addrs: [127.0.0.1]\n"
	if err := os.WriteFile(list, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "a.sock")
	a, _ := startNode(t, "a", dir, keyA, list, "--ephemeral", "--api", sock)

	check := jsonOut(t, dir, "allowlist", "check", "--json", list)
	status := jsonOut(t, dir, "status", "--api", sock, "--json")
	digest, _ := check["digest"].(string)
	al, _ := status["allowlist"].(map[string]any)
	if len(digest) != 64 || al == nil || al["digest"] != digest || check["peers"] != 2.0 || check["ok"] != true {
		t.Fatalf("allowlist check --json %v; status allowlist %v: want ok, 2 peers and the status digest", check, al)
	}
	text := mustRun(t, dir, "allowlist", "check", list)
	if want := list + ": ok, 2 peers, digest " + digest[:16] + "\n"; text != want {
		t.Fatalf("allowlist check: %q, want %q", text, want)
	}
	if st := mustRun(t, dir, "status", "--api", sock); !strings.Contains(st, "digest "+digest[:16]) {
		t.Fatalf("status does not show the digest check printed, %s:\n%s", digest[:16], st)
	}
	stopAll(t, a)
}

// allowlist check refuses a file that lists no peers, as a node's reload
// does, unless the file says allow_empty: true. It said "ok, 0 peers",
// though "allowlist check F && allowlist reload" is its help's example.
func TestAllowlistCheckRefusesEmptyAsReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, body := range []string{"", "# all gone\n", "peers: []\n", "peers:\nallow_empty: false\n"} {
		file := filepath.Join(dir, "empty.yaml")
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"allowlist", "check", file}, {"allowlist", "check", "--json", file}} {
			r := runInProc(args...)
			want := "p2pnode: allowlist: " + file + ": the file lists no peers"
			if r.code != exitError || !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, "allow_empty: true") ||
				strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
				t.Errorf("%v of %q: %+v; want exit %d and one line %q...", args[2:], body, r, exitError, want)
			}
		}
	}
	file := filepath.Join(dir, "meant.yaml")
	if err := os.WriteFile(file, []byte("peers: []\nallow_empty: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runInProc("allowlist", "check", file); r.code != 0 || !strings.HasPrefix(r.stdout, file+": ok, 0 peers, digest ") {
		t.Fatalf("check of an empty list with allow_empty: true: %+v", r)
	}
}

// A routing table checked as an allowlist says which flag checks it: the
// parser's own complaint, an unknown key "routes", did not.
func TestAllowlistCheckPointsARoutingTableAtRoutes(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(file, []byte("routes:\n  - from: \"*\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runInProc("allowlist", "check", file); r.code != exitError || !strings.Contains(r.stderr, `unknown key "routes"`) ||
		!strings.Contains(r.stderr, "check it with --routes") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("check of a routing table: %+v; want exit %d and the --routes hint on one line", r, exitError)
	}
	if r := runInProc("allowlist", "check", "--routes", file); r.code != 0 || r.stdout != file+": ok, 1 route\n" {
		t.Errorf("check --routes of the same file: %+v", r)
	}
	// A broken allowlist gets no such hint.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("peerz: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runInProc("allowlist", "check", bad); r.code != exitError || strings.Contains(r.stderr, "--routes") {
		t.Errorf("check of a broken allowlist: %+v", r)
	}
}
