package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// find and send --standalone take the membership version run would start
// from: given an expired version 1 and a configuration whose data
// directory holds a newer version, they use the newer one (its members
// are their allowlist: the target is a member of version 2 only). With no
// newer version saved, or ephemeral, they fail as run does, saying that
// nothing replaces the expired version. They checked version 1 as a
// genesis document and refused it, whatever the data directory held.
func TestToolsMembershipAsRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyC, idC := newKey(t, dir, "c.key")
	keyD, idD := newKey(t, dir, "d.key")
	g := newExpiredGenesis(t, dir, "--add", idC+",carol", "--add", idD+",dave")
	v1, v2 := g.V1, g.V2
	withSaved, empty := filepath.Join(dir, "data-saved"), filepath.Join(dir, "data-empty")
	g.saveV2(t, withSaved)
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	writeConfig := func(name, extra string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("key: "+keyC+"\nmembership: "+v1+"\n"+extra), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	// dave, a member of version 2 only, runs on it (a version after 1 is
	// trusted as given).
	d := startProc(t, "d", dir, true, "run", "--json", "--key", keyD, "--membership", v2, "--ephemeral", "--dht",
		"--auto-reply", "echo", "--listen", "/ip4/127.0.0.1/tcp/0")
	addrD := firstAddr(t, d.expect("listening event", match("listening"))[0])

	good := writeConfig("saved.yaml", "data_dir: "+withSaved+"\n")
	if out := mustRun(t, dir, "send", "--standalone", "--config", good, "--addr", addrD, "hello, dave"); out != "hello, dave\n" {
		t.Fatalf("send --standalone with a newer saved version: %q", out)
	}
	var found findResult
	out := mustRun(t, dir, "find", "--config", good, "--bootstrap", addrD, "--peer", idD, "--json")
	if err := json.Unmarshal([]byte(out), &found); err != nil || found.Peer != idD || len(found.Addrs) == 0 || found.Addrs[0] != addrD {
		t.Fatalf("find with a newer saved version: %+v (%v): %q", found, err, out)
	}

	for _, tc := range []struct{ name, extra, want string }{
		{"no saved version", "data_dir: " + empty + "\n", "no newer version is saved in " + filepath.Join(empty, membershipFile)},
		{"ephemeral", "ephemeral: true\n", "an ephemeral node has no saved version"},
	} {
		path := writeConfig(strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.extra)
		for _, args := range [][]string{
			{"send", "--standalone", "--config", path, "--addr", addrD, "hi"},
			{"find", "--config", path, "--bootstrap", addrD, "--peer", idD},
		} {
			r := runCLI(t, dir, args...)
			if r.code != exitError || !strings.Contains(r.stderr, "expired") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("%s: %s: %+v; want exit %d, expired and %q", tc.name, args[0], r, exitError, tc.want)
			}
		}
	}
	stopAll(t, d)
}
