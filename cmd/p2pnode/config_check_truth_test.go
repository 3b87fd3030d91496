package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// config check judges the membership version run would start from: with
// an expired version 1 given and a newer valid version saved in the data
// directory, it passes and names the saved version (it refused the
// configuration, though run starts from it); with no newer version saved,
// or ephemeral, it fails as run does, saying that nothing replaces the
// expired version.
func TestConfigCheckMembershipAsRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, idC := newKey(t, dir, "c.key")
	g := newExpiredGenesis(t, dir, "--add", idC+",carol")
	keyA, v1 := g.KeyA, g.V1
	withSaved, empty := filepath.Join(dir, "data-saved"), filepath.Join(dir, "data-empty")
	saved := g.saveV2(t, withSaved)
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	writeConfig := func(name, extra string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		body := "key: " + keyA + "\nmembership: " + v1 + "\nlisten: [/ip4/127.0.0.1/tcp/0]\n" + extra
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	good := writeConfig("saved.yaml", "data_dir: "+withSaved+"\n")
	r := runInProc("config", "check", good)
	want := `membership version 2 from "` + saved + `" with 3 members`
	if r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Fatalf("config check with a newer saved version: %+v; want exit 0 and %q", r, want)
	}
	r = runInProc("config", "check", "--json", good)
	var res struct {
		OK      bool   `json:"ok"`
		Peers   int    `json:"peers"`
		Version uint64 `json:"membership_version"`
		File    string `json:"membership_file"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != 0 || !res.OK || res.Peers != 3 ||
		res.Version != 2 || res.File != saved {
		t.Fatalf("config check --json: %+v (%v): %+v", res, err, r)
	}

	for _, tc := range []struct{ name, extra, want string }{
		{"no saved version", "data_dir: " + empty + "\n", "no newer version is saved in " + filepath.Join(empty, membershipFile)},
		{"ephemeral", "ephemeral: true\n", "an ephemeral node has no saved version"},
	} {
		path := writeConfig(strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.extra)
		for _, args := range [][]string{{"config", "check", path}, {"run", "--config", path}} {
			r := runInProc(args...)
			if r.code != exitError || !strings.Contains(r.stderr, "expired") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("%s: %v: %+v; want exit %d, expired and %q", tc.name, args[:2], r, exitError, tc.want)
			}
		}
	}
}

// A relay that is the node itself (its own peer ID) fails config check as
// it fails run, a usage mistake (exit 2) named in one line, before the
// node starts. config check passed it, and run refused it only once the
// node was being built, with exit 1.
func TestConfigCheckRelayIsSelf(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "node.key")
	r := runInProc("keygen", "--out", key)
	if r.code != 0 {
		t.Fatalf("keygen: %+v", r)
	}
	id := strings.TrimSpace(r.stdout)
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, testPeer)
	relay := "/ip4/127.0.0.1/tcp/4001/p2p/" + id
	path := filepath.Join(dir, "node.yaml")
	body := "key: node.key\nallowlist: allowlist.yaml\nephemeral: true\nlisten: [/ip4/127.0.0.1/tcp/0]\nrelays: [" + relay + "]\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	want := `relay "` + relay + `" is this node itself`
	for _, args := range [][]string{{"config", "check", path}, {"run", "--config", path}} {
		r := runInProc(args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: %+v; want exit %d and %q", args[:2], r, exitUsage, want)
		}
	}
}

// config check reports the listen addresses run will use: with no listen:
// key, p2p's default, which run then listens on. It said "0 listen
// addresses".
func TestConfigCheckDefaultListen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "node.key")
	al := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, al, id)
	conf := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(conf, []byte("key: "+key+"\nallowlist: "+al+"\nephemeral: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const def = "/ip4/127.0.0.1/tcp/0"
	if r := runInProc("config", "check", conf); r.code != 0 || !strings.Contains(r.stdout, "listen address "+def+" (the default)") {
		t.Fatalf("config check: %+v; want the default listen address", r)
	}
	r := runInProc("config", "check", "--json", conf)
	var res struct {
		Listen []string `json:"listen"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != 0 || len(res.Listen) != 1 || res.Listen[0] != def {
		t.Fatalf("config check --json: %+v (%v): %+v", res, err, r)
	}
	p := startProc(t, "node", dir, true, "run", "--json", "--config", conf)
	l := p.expect("listening event", match("listening"))[0]
	if addr := firstAddr(t, l); !strings.HasPrefix(addr, "/ip4/127.0.0.1/tcp/") {
		t.Fatalf("run listens on %s, not on what config check reported (%s)", addr, def)
	}
	stopAll(t, p)

	// A file that names its addresses gets them counted, as before.
	if err := os.WriteFile(conf, []byte("key: "+key+"\nallowlist: "+al+"\nephemeral: true\nlisten: [/ip4/127.0.0.1/tcp/0, /ip4/127.0.0.2/tcp/0]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runInProc("config", "check", conf); r.code != 0 || !strings.Contains(r.stdout, "2 listen addresses") {
		t.Fatalf("config check with two: %+v", r)
	}
}
