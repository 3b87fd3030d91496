package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/spf13/pflag"

	"github.com/bitvmx/go-bitvmx-p2p/store"
)

func TestExampleConfigParses(t *testing.T) {
	c, err := parseConfig([]byte(exampleConfig))
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	// Spot checks that each section was read, not silently skipped.
	switch {
	case c.Key != "node.key" || c.Allowlist != "allowlist.yaml":
		t.Errorf("files: %+v", c)
	case len(c.Listen) != 2 || c.Listen[0] != "/ip4/0.0.0.0/tcp/4001":
		t.Errorf("listen: %v", c.Listen)
	case c.RateLimit != rateLimitConfig{Burst: 20, Refill: time.Second, Ban: 30 * time.Second}:
		t.Errorf("rate limit: %+v", c.RateLimit)
	case c.Timeouts != timeoutsConfig{Ack: 10 * time.Second, Read: 10 * time.Second, Write: 10 * time.Second, Dial: 10 * time.Second, Handshake: 15 * time.Second, AckDelay: 2 * time.Millisecond, StreamIdle: time.Minute}:
		t.Errorf("timeouts: %+v", c.Timeouts)
	case c.MaxMessage != 1<<20 || c.MaxInFlight != 64 || c.SendQueue != 1024 || c.StreamsPer != 4:
		t.Errorf("limits: %+v", c)
	case c.Buffers != buffersConfig{Receiver: 1024, Priority: 64, Sender: 64}:
		t.Errorf("buffers: %+v", c.Buffers)
	case c.Log != logConfig{Level: "warn", Format: "console"}:
		t.Errorf("log: %+v", c.Log)
	case c.DataDir != "" || c.Ephemeral || c.MaxStoreSize != 0 || c.storeCap() != store.DefaultMaxBytes:
		t.Errorf("store: data_dir %q, ephemeral %v, max_store_size %d", c.DataDir, c.Ephemeral, c.MaxStoreSize)
	}
	for _, k := range []string{"\ndata_dir:", "\nephemeral:", "\nmax_store_size:"} {
		if !strings.Contains(exampleConfig, k) {
			t.Errorf("the example has no %s", k[1:])
		}
	}
	// As it is, and made ephemeral (a store setting it gives would refuse).
	eph := c
	eph.Ephemeral = true
	if err := eph.validate(); err != nil {
		t.Errorf("validate, ephemeral: %v", err)
	}
	if err := c.validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
}

// The command prints exactly the example, and the printed file loads, with
// its relative paths resolved against the file's directory.
func TestConfigExampleCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := execute([]string{"config", "example"}, stdio{out: &out, err: &errOut}); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if out.String() != exampleConfig {
		t.Fatal("config example does not print exampleConfig")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "p2pnode.yaml")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Key != filepath.Join(dir, "node.key") || c.Allowlist != filepath.Join(dir, "allowlist.yaml") || c.Routes != "" {
		t.Fatalf("paths not resolved against %s: %+v", dir, c)
	}
	// check opens the files the example names, as run would.
	if code := execute([]string{"keygen", "--out", c.Key}, stdio{out: &out, err: &errOut}); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, errOut.String())
	}
	if err := os.WriteFile(c.Allowlist, []byte("peers:\n  - id: "+testPeer+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := execute([]string{"config", "check", path}, stdio{out: &out, err: &errOut}); code != 0 {
		t.Fatalf("config check: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), ": ok (peer 16Uiu2") || !strings.Contains(out.String(), "with 1 peer,") ||
		!strings.Contains(out.String(), ", store at most 1073741824 bytes)") {
		t.Fatalf("config check printed %q", out.String())
	}
}

// config check refuses what run refuses, with the same message and exit
// status: every value, and every file the configuration names.
func TestConfigCheckAsRun(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := execute([]string{"keygen", "--out", filepath.Join(dir, "node.key")}, stdio{out: &out, err: &errOut}); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, errOut.String())
	}
	files := map[string]string{
		"allowlist.yaml": "peers:\n  - id: " + testPeer + "\n",
		"bad-list.yaml":  "peers:\n  - id: " + testPeer + "\n  - id: nope\n",
		"loose.key":      "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := "key: node.key\nallowlist: allowlist.yaml\nephemeral: true\n"
	cases := []struct {
		name, extra, want string
		code              int
	}{
		{"metrics port only", "metrics_addr: \"9464\"\n", `metrics address "9464": want HOST:PORT`, exitUsage},
		{"log level", "log: {level: verbose}\n", `log level "verbose"`, exitUsage},
		{"log format", "log: {format: xml}\n", `log format "xml"`, exitUsage},
		{"listen not a multiaddr", "listen: [/tcp/x]\n", `listen address "/tcp/x" is not a multiaddr`, exitUsage},
		{"listen host:port", "listen: [\"127.0.0.1:4200\"]\n", "write it as /ip4/127.0.0.1/tcp/4200", exitUsage},
		{"listen quic", "listen: [/ip4/0.0.0.0/udp/4001/quic-v1]\n", "TCP only", exitUsage},
		{"bootstrap", "dht: {enabled: true, bootstrap: [/ip4/1.2.3.4/tcp/1]}\n", "bootstrap", exitUsage},
		{"store size negative", "max_store_size: -1\n", "max-store-size must not be negative (got -1)", exitUsage},
		{"store size small", "max_store_size: 1048576\n", "max-store-size must be at least 16777216 bytes", exitUsage},
		{"store size ephemeral", "max_store_size: 16777216\n", "an ephemeral node has no store", exitUsage},
		{"missing key", "key: missing.key\n", "no such file", exitError},
		{"allowlist as key", "key: allowlist.yaml\n", "not a key file", exitError},
		{"directory as key", "key: .\n", "not a key file (a directory)", exitError},
		{"empty key file", "key: loose.key\n", "not a key file", exitError},
		{"allowlist line", "allowlist: bad-list.yaml\n", "bad-list.yaml: line 3:", exitError},
		{"missing routes", "routes: none.yaml\n", "no such file", exitError},
	}
	for _, tc := range cases {
		// A repeated key is an error: the case's keys replace the base's.
		doc := tc.extra
		for _, line := range strings.Split(strings.TrimSpace(base), "\n") {
			k, _, _ := strings.Cut(line, ":")
			if !strings.Contains(tc.extra, k+":") {
				doc += line + "\n"
			}
		}
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"config", "check", path}, {"run", "--config", path}} {
			var out, errOut bytes.Buffer
			code := execute(args, stdio{in: strings.NewReader(""), out: &out, err: &errOut})
			if code != tc.code || !strings.Contains(errOut.String(), tc.want) || strings.Count(errOut.String(), "\n") != 1 {
				t.Errorf("%s: %v: exit %d, stderr %q; want exit %d and %q", tc.name, args[:2], code, errOut.String(), tc.code, tc.want)
			}
		}
	}
}

// parseRunFlags parses args as "p2pnode run" would and returns its flags.
func parseRunFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	root := newRootCmd(&app{stdio: stdio{out: &bytes.Buffer{}, err: &bytes.Buffer{}}})
	run, _, err := root.Find([]string{"run"})
	if err != nil {
		t.Fatal(err)
	}
	if err := run.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return run.Flags()
}

func TestFlagsOverrideFile(t *testing.T) {
	c, err := parseConfig([]byte(`
key: file.key
listen: [/ip4/127.0.0.1/tcp/1, /ip4/127.0.0.1/tcp/2]
allowlist: file-allowlist.yaml
json: true
rate_limit: {burst: 5, refill: 2s}
timeouts: {ack: 3s, dial: 4s}
max_message_size: 1000
log: {level: info, format: json}
`))
	if err != nil {
		t.Fatal(err)
	}
	f := parseRunFlags(t, "--key", "flag.key", "--listen", "/ip4/127.0.0.1/tcp/9",
		"--rate-burst", "7", "--ack-timeout", "1m", "--handshake-timeout", "40s", "--json=false", "--log-level", "debug")
	if err := overlayFlags(&c, f); err != nil {
		t.Fatal(err)
	}
	want := runConfig{
		Key:        "flag.key",                                         // flag
		Listen:     []string{"/ip4/127.0.0.1/tcp/9"},                   // flag replaces the list
		Allowlist:  "file-allowlist.yaml",                              // file
		JSON:       false,                                              // flag, set to false
		RateLimit:  rateLimitConfig{Burst: 7, Refill: 2 * time.Second}, // flag, file
		Timeouts:   timeoutsConfig{Ack: time.Minute, Dial: 4 * time.Second, Handshake: 40 * time.Second},
		MaxMessage: 1000,
		Log:        logConfig{Level: "debug", Format: "json"}, // global flag, file
	}
	if !configEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	if pc := c.nodeConfig(); pc.HandshakeTimeout != 40*time.Second || pc.DialTimeout != 4*time.Second {
		t.Fatalf("node config: handshake %v, dial %v", pc.HandshakeTimeout, pc.DialTimeout)
	}
}

// Flags alone, without a file, make the whole configuration; --listen
// repeats.
func TestFlagsWithoutFile(t *testing.T) {
	var c runConfig
	f := parseRunFlags(t, "--key", "k", "--allowlist", "a", "--listen", "/ip4/127.0.0.1/tcp/1",
		"--listen", "/ip6/::1/tcp/1", "--max-in-flight", "3", "--no-stdin", "--metrics-addr", "127.0.0.1:0")
	if err := overlayFlags(&c, f); err != nil {
		t.Fatal(err)
	}
	if c.Key != "k" || c.Allowlist != "a" || len(c.Listen) != 2 || c.MaxInFlight != 3 || !c.NoStdin || c.MetricsAddr != "127.0.0.1:0" {
		t.Fatalf("%+v", c)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if pc := c.nodeConfig(); pc.MaxInFlight != 3 || pc.AckTimeout != 0 {
		t.Fatalf("node config %+v", pc)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct{ doc, want string }{
		{"key: a\nmax_mesage_size: 10\n", `line 2: unknown key "max_mesage_size"`},
		{"timeouts:\n  ack: soon\n", "line 2: cannot unmarshal !!str `soon` into time.Duration"},
		{"timeouts:\n  ack: 10\n", "line 2: cannot unmarshal !!int `10` into time.Duration"},
		{"listen: /ip4/1.2.3.4/tcp/1\n", "line 1: cannot unmarshal !!str"},
		{"key: [\n", "line 1: did not find expected node content"},
		{"key: a\n---\nkey: b\n", "only one YAML document"},
	}
	for _, tc := range cases {
		_, err := parseConfig([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "main.") {
			t.Errorf("%q: got %v, want %q", tc.doc, err, tc.want)
		}
	}
	if c, err := parseConfig(nil); err != nil || !configEqual(c, runConfig{}) {
		t.Errorf("empty document: %+v, %v", c, err)
	}
	for _, c := range []runConfig{
		{Allowlist: "a"},
		{Key: "k"},
		{Key: "k", Allowlist: "a", MaxMessage: -1},
		{Key: "k", Allowlist: "a", Timeouts: timeoutsConfig{Dial: -time.Second}},
		{Key: "k", Allowlist: "a", Timeouts: timeoutsConfig{Handshake: -time.Second}},
		{Key: "k", Allowlist: "a", Relays: []string{"/ip4/10.0.0.1/tcp/4001"}}, // no peer ID
		{Key: "k", Allowlist: "a", Relays: []string{"not an address"}},
		{Key: "k", Allowlist: "a", Reachability: "public"}, // without relays
		{Key: "k", Allowlist: "a", HolePunching: true},     // without relays
		{Key: "k", Allowlist: "a", Relay: relayConfig{Enabled: true, MaxCircuits: -1}},
		{Key: "k", Allowlist: "a", Relays: []string{testRelay}, Reachability: "sometimes"},
	} {
		if err := c.validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func configEqual(a, b runConfig) bool {
	if len(a.Listen) == 0 && len(b.Listen) == 0 {
		a.Listen, b.Listen = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// data_dir is a path like the others, relative to the file; --ephemeral
// and a data directory together are a mistake; the default directory is
// under XDG_STATE_HOME, or ~/.local/state.
func TestStoreSettings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p2pnode.yaml")
	if err := os.WriteFile(path, []byte("key: k\nallowlist: a\ndata_dir: state\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != filepath.Join(dir, "state") || c.Ephemeral {
		t.Fatalf("data_dir %q, ephemeral %v", c.DataDir, c.Ephemeral)
	}
	both := c
	if err := overlayFlags(&both, parseRunFlags(t, "--ephemeral")); err != nil {
		t.Fatal(err)
	}
	if err := both.validate(); err == nil || !strings.Contains(err.Error(), "give one of --data-dir and --ephemeral") ||
		exitCode(err) != exitUsage {
		t.Fatalf("data_dir and --ephemeral: %v", err)
	}
	if err := overlayFlags(&c, parseRunFlags(t, "--ephemeral", "--data-dir", "")); err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil || !c.Ephemeral || c.DataDir != "" {
		t.Fatalf("--ephemeral --data-dir '': %+v, %v", c, err)
	}

	// max_store_size is a byte count, the flag overriding the file; 0 is
	// the store's default.
	if err := os.WriteFile(path, []byte("key: k\nallowlist: a\nmax_store_size: 33554432\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err = loadConfigFile(path); err != nil || c.MaxStoreSize != 32<<20 || c.storeCap() != 32<<20 {
		t.Fatalf("max_store_size: %+v, %v", c, err)
	}
	if err := overlayFlags(&c, parseRunFlags(t, "--max-store-size", "50331648")); err != nil || c.MaxStoreSize != 48<<20 {
		t.Fatalf("--max-store-size: %d, %v", c.MaxStoreSize, err)
	}
	if err := (&runConfig{Key: "k", Allowlist: "a"}).validate(); err != nil || (&runConfig{}).storeCap() != store.DefaultMaxBytes {
		t.Fatalf("default store cap: %v", err)
	}
	for _, v := range []int64{-1, 1, minStoreSize - 1} {
		bad := runConfig{Key: "k", Allowlist: "a", MaxStoreSize: v}
		if err := bad.validate(); err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), "max-store-size") {
			t.Errorf("max_store_size %d: %v", v, err)
		}
	}

	id := mustPeer(t, testPeer)
	t.Setenv("XDG_STATE_HOME", "/var/state")
	if d, err := defaultDataDir(id); err != nil || d != "/var/state/p2pnode/"+testPeer {
		t.Fatalf("with XDG_STATE_HOME: %q, %v", d, err)
	}
	for _, xdg := range []string{"", "relative/state"} {
		t.Setenv("XDG_STATE_HOME", xdg)
		t.Setenv("HOME", "/home/op")
		if d, err := defaultDataDir(id); err != nil || d != "/home/op/.local/state/p2pnode/"+testPeer {
			t.Fatalf("XDG_STATE_HOME %q: %q, %v", xdg, d, err)
		}
	}
}

const testRelay = "/ip4/203.0.113.7/tcp/4001/p2p/16Uiu2HAmKFyP8eVv1Wq832sVky8BeFi27ZHdB9dj5cWu288vv2dH"

// The relay keys reach p2p.Config.
func TestRelaySettings(t *testing.T) {
	c, err := parseConfig([]byte("relays: [" + testRelay + "]\nreachability: public\nhole_punching: true\n" +
		"relay:\n  enabled: true\n  max_circuits: 4\n  circuit_duration: 10m\n  circuit_data: 1048576\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.Key, c.Allowlist = "k", "a"
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	pc := c.nodeConfig()
	if len(pc.Relays) != 1 || pc.Relays[0].String() != testRelay || pc.Reachability != network.ReachabilityPublic || !pc.HolePunching ||
		!pc.Relay.Enabled || pc.Relay.MaxCircuits != 4 || pc.Relay.CircuitDuration != 10*time.Minute || pc.Relay.CircuitData != 1<<20 {
		t.Fatalf("p2p config %+v", pc)
	}
}
