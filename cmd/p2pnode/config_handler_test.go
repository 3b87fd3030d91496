package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// The example shows the handler: and dht: sections, and they parse to the
// defaults they state.
func TestExampleConfigHandlerAndDHT(t *testing.T) {
	c, err := parseConfig([]byte(exampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	want := handlerConfig{ReplyTimeout: 30 * time.Second, MaxAttempts: 5,
		Backoff: backoffConfig{Base: 100 * time.Millisecond, Max: 5 * time.Second}, IdleTimeout: 30 * time.Second,
		Linger: 250 * time.Millisecond, MaxConcurrentPerPeer: givenInt{N: 1, Given: true}}
	if c.Handler != want {
		t.Errorf("handler: %+v", c.Handler)
	}
	if c.DHT.Enabled || len(c.DHT.Bootstrap) != 0 || c.DHT.RecordTTL != time.Hour || c.DHT.Refresh != 15*time.Minute {
		t.Errorf("dht: %+v", c.DHT)
	}
}

// Flags override the handler: and dht: sections key by key; --bootstrap
// takes a comma-separated list and replaces the file's.
func TestHandlerAndDHTFlagsOverrideFile(t *testing.T) {
	const boot = "/ip4/127.0.0.1/tcp/1/p2p/" + testPeer
	c, err := parseConfig([]byte(`
key: k
allowlist: a
handler: {reply_timeout: 5s, max_attempts: 3, backoff: {base: 1s}, keep_connection: true}
dht: {enabled: true, bootstrap: [` + boot + `], record_ttl: 2h}
`))
	if err != nil {
		t.Fatal(err)
	}
	f := parseRunFlags(t, "--max-attempts", "7", "--auto-reply", "echo", "--idle-timeout", "-1s",
		"--bootstrap", boot+","+boot, "--record-refresh", "10m")
	if err := overlayFlags(&c, f); err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	want := handlerConfig{ReplyTimeout: 5 * time.Second, MaxAttempts: 7, Backoff: backoffConfig{Base: time.Second},
		IdleTimeout: -time.Second, KeepConnection: true, AutoReply: "echo"}
	if c.Handler != want {
		t.Errorf("handler %+v, want %+v", c.Handler, want)
	}
	if !c.DHT.Enabled || len(c.DHT.Bootstrap) != 2 || c.DHT.RecordTTL != 2*time.Hour || c.DHT.Refresh != 10*time.Minute {
		t.Errorf("dht %+v", c.DHT)
	}
	hc := c.Handler.handlerConfig(p2p.Config{MaxInFlight: 9})
	if hc.MaxAttempts != 7 || hc.IdleTimeout != -time.Second || !hc.KeepConnection || hc.BackoffBase != time.Second || hc.Node.MaxInFlight != 9 {
		t.Errorf("handler.Config %+v", hc)
	}
	dc, err := c.DHT.dhtConfig()
	if err != nil || len(dc.Bootstrap) != 1 || dc.RecordTTL != 2*time.Hour || dc.Refresh != 10*time.Minute {
		t.Errorf("dht.Config %+v, %v (the same peer twice is one bootstrap peer)", dc, err)
	}
}

func TestHandlerAndDHTConfigErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"handler: {max_attempts: -1}", "max-attempts must not be negative"},
		{"handler: {reply_timeout: -1s}", "reply-timeout must not be negative"},
		{"handler: {auto_reply: shout}", `auto-reply "shout"`},
		{"dht: {bootstrap: [/ip4/127.0.0.1/tcp/1/p2p/" + testPeer + "]}", "the DHT is off"},
		{"dht: {enabled: true, bootstrap: [/ip4/127.0.0.1/tcp/1]}", "bootstrap"},
		{"dht: {enabled: true, record_ttl: 1m, refresh: 1m}", "must be below record-ttl"},
		{"dht: {enabled: true, refresh: 2h}", "must be below record-ttl (default 1h0m0s)"},
		{"handler: {reply: 1s}", `unknown key "reply"`},
		{"handler: {max_concurrent_per_peer: 0}", "max-concurrent-per-peer must be between 1 and 1024 (got 0)"},
		{"handler: {max_concurrent_per_peer: -3}", "max-concurrent-per-peer must be between 1 and 1024 (got -3)"},
		{"handler: {max_concurrent_per_peer: 1025}", "max-concurrent-per-peer must be between 1 and 1024 (got 1025)"},
		{"handler: {max_concurrent_per_peer: many}", "cannot unmarshal !!str `many`"},
	} {
		c, err := parseConfig([]byte("key: k\nallowlist: a\n" + tc.doc + "\n"))
		if err == nil {
			err = c.validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.doc, err, tc.want)
		}
	}
}

// The handler's concurrent exchanges per peer reach handler.Config from
// the file and from --max-concurrent-per-peer, which overrides the file;
// left out, it is 0, the handler's default of 1.
func TestMaxConcurrentPerPeerReachesHandler(t *testing.T) {
	c, err := parseConfig([]byte("key: k\nallowlist: a\nhandler: {max_concurrent_per_peer: 8}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.Handler.handlerConfig(p2p.Config{}).MaxConcurrentPerPeer; got != 8 {
		t.Errorf("from the file: MaxConcurrentPerPeer %d, want 8", got)
	}
	if err := overlayFlags(&c, parseRunFlags(t, "--max-concurrent-per-peer", "16")); err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.Handler.handlerConfig(p2p.Config{}).MaxConcurrentPerPeer; got != 16 {
		t.Errorf("from the flag over the file: MaxConcurrentPerPeer %d, want 16", got)
	}
	// A flag not given leaves the file's value.
	if err := overlayFlags(&c, parseRunFlags(t, "--max-attempts", "2")); err != nil {
		t.Fatal(err)
	}
	if got := c.Handler.handlerConfig(p2p.Config{}).MaxConcurrentPerPeer; got != 16 {
		t.Errorf("another flag: MaxConcurrentPerPeer %d, want 16 still", got)
	}
	var none runConfig
	if err := overlayFlags(&none, parseRunFlags(t)); err != nil {
		t.Fatal(err)
	}
	if got := none.Handler.handlerConfig(p2p.Config{}).MaxConcurrentPerPeer; got != 0 {
		t.Errorf("not given: MaxConcurrentPerPeer %d, want 0 (the handler's default)", got)
	}
}

// A value of --max-concurrent-per-peer out of 1..1024 is refused by run
// with a usage error before anything starts, and so is one that is not a
// number.
func TestMaxConcurrentPerPeerRefused(t *testing.T) {
	dir := t.TempDir()
	key, id := newKey(t, dir, "a.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id)
	for _, tc := range []struct{ v, want string }{
		{"0", "max-concurrent-per-peer must be between 1 and 1024 (got 0)"},
		{"-1", "max-concurrent-per-peer must be between 1 and 1024 (got -1)"},
		{"100000", "max-concurrent-per-peer must be between 1 and 1024 (got 100000)"},
		{"two", `invalid argument "two" for "--max-concurrent-per-peer"`},
	} {
		r := runCLI(t, dir, "run", "--key", key, "--allowlist", list, "--ephemeral",
			"--listen", "/ip4/127.0.0.1/tcp/0", "--no-stdin", "--max-concurrent-per-peer", tc.v)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("--max-concurrent-per-peer %s: exit %d, stderr %q; want exit %d and %q", tc.v, r.code, r.stderr, exitUsage, tc.want)
		}
	}
}
