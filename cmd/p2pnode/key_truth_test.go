package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A key file holding secp256k1 secret 0 is refused, naming the file, by
// every command that loads a key. run and config check took it (run
// listened as a peer ID no allowlist can hold), and id failed on the
// public key without naming the file.
func TestUnusableKeyRefusedEverywhere(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "zero.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("0", 64)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, other := newKey(t, dir, "other.key")
	al := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, al, other)
	conf := filepath.Join(dir, "node.yaml")
	body := "key: " + key + "\nallowlist: " + al + "\nlisten: [/ip4/127.0.0.1/tcp/0]\nephemeral: true\n"
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"id", "--key", key},
		{"config", "check", conf},
		{"run", "--config", conf},
		{"send", "--standalone", "--key", key, "--allowlist", al,
			"--addr", "/ip4/127.0.0.1/tcp/9/p2p/" + other, "hello"},
	} {
		r := runInProc(args...)
		want := "load key " + key + ": not a valid key: secp256k1 secret is 0"
		if r.code != exitError || !strings.Contains(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: %+v; want exit %d and one line with %q", args[:2], r, exitError, want)
		}
	}
}
