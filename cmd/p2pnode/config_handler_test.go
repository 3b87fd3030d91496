package main

import (
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
		Linger: 250 * time.Millisecond}
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
