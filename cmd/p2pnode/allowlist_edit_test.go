package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// allowlist add of an entry the file already holds, the addresses in
// another order included, says nothing changed (exit 0) and leaves the
// file alone, its comments included. It reported "updated" and rewrote
// the file, dropping the comments.
func TestAllowlistAddUnchanged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "allowlist.yaml")
	body := "# who may connect: reviewed by ops\npeers:\n  - id: " + testPeer +
		"  # alice's node\n    name: alice\n    addrs: [10.1.0.0/16, 127.0.0.2]\n    relay: true\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	add := []string{"allowlist", "add", file, "--id", testPeer, "--name", "alice", "--addr", "127.0.0.2", "--addr", "10.1.0.0/16", "--relay"}
	r := runInProc(add...)
	if r.code != 0 || r.stdout != "unchanged: "+testPeer+" is already in "+file+" as given (1 peer)\n" || r.stderr != "" {
		t.Fatalf("add of the same entry: %+v", r)
	}
	r = runInProc(append(add, "--json")...)
	var edit map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &edit); err != nil || r.code != 0 || edit["action"] != "unchanged" || edit["peers"] != 1.0 {
		t.Fatalf("add --json of the same entry: %v (%v): %+v", edit, err, r)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != body {
		t.Fatalf("the file after adding what it holds: %q, %v; want it untouched", b, err)
	}

	// Any difference is an update, written.
	for _, change := range [][]string{
		{"--name", "alice-2", "--addr", "127.0.0.2", "--addr", "10.1.0.0/16", "--relay"},
		{"--name", "alice-2", "--addr", "127.0.0.2", "--relay"},
		{"--name", "alice-2", "--addr", "127.0.0.2"},
	} {
		r := runInProc(append([]string{"allowlist", "add", file, "--id", testPeer}, change...)...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "updated "+testPeer) {
			t.Fatalf("add %v: %+v", change, r)
		}
	}
	if b, err := os.ReadFile(file); err != nil || strings.Contains(string(b), "relay") || strings.Contains(string(b), "10.1.0.0") {
		t.Fatalf("the file after the updates: %q, %v", b, err)
	}
}

// A name with a control or format character (a bidi override, a newline)
// is a bad --name (exit 2), and the file is not written; a file holding
// one fails allowlist check, naming the line. Both were accepted.
func TestAllowlistNameControlCharacters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "allowlist.yaml")
	for _, name := range []string{"alice\u202eecila", "alice\nbob", "alice\u200b"} {
		r := runInProc("allowlist", "add", file, "--id", testPeer, "--name", name)
		if r.code != exitUsage || !strings.Contains(r.stderr, "control or format character") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("add --name %q: %+v; want exit %d and the character named", name, r, exitUsage)
		}
		if _, err := os.Lstat(file); err == nil {
			t.Fatalf("add --name %q wrote the file", name)
		}
	}
	body := "peers:\n  - id: " + testPeer + "\n    name: \"alice\\u202Eecila\"\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runInProc("allowlist", "check", file)
	if r.code != exitError || !strings.Contains(r.stderr, file+": line 3:") || !strings.Contains(r.stderr, "control or format character") {
		t.Fatalf("check of a name with a bidi override: %+v", r)
	}
}
