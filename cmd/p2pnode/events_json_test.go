package main

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

const testPeer = "12D3KooWLw5Cx86M5J7sb223jqf5EbcBdBuGBuHxb1DdeqKhKzvr"

func mustPeer(t *testing.T, s string) peer.ID {
	t.Helper()
	id, err := peer.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Each event renders to exactly the documented JSON object, one line.
func TestRenderJSON(t *testing.T) {
	p := mustPeer(t, testPeer)
	until := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name string
		ev   any
		want string
	}{
		{"listening", listeningEvent{Peer: p, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001/p2p/" + testPeer)}},
			`{"event":"listening","peer":"` + testPeer + `","addrs":["/ip4/127.0.0.1/tcp/4001/p2p/` + testPeer + `"]}`},
		{"listening with metrics", listeningEvent{Peer: p, Metrics: "127.0.0.1:9100"},
			`{"event":"listening","peer":"` + testPeer + `","addrs":[],"metrics":"127.0.0.1:9100"}`},
		{"listening durable", listeningEvent{Peer: p, DataDir: "/var/lib/p2pnode"},
			`{"event":"listening","peer":"` + testPeer + `","addrs":[],"data_dir":"/var/lib/p2pnode"}`},
		{"listening with api", listeningEvent{Peer: p, DataDir: "/var/lib/p2pnode", API: "/var/lib/p2pnode/control.sock"},
			`{"event":"listening","peer":"` + testPeer + `","addrs":[],"data_dir":"/var/lib/p2pnode","api":"/var/lib/p2pnode/control.sock"}`},
		{"data text", p2p.Data{From: p, Bytes: []byte("hello <b>&")}, `{"event":"data","from":"` + testPeer + `","data":"hello <b>&","data_b64":"aGVsbG8gPGI+Jg=="}`},
		{"data binary", p2p.Data{From: p, Bytes: []byte{0xff, 0x00}}, `{"event":"data","from":"` + testPeer + `","data_b64":"/wA="}`},
		{"data empty", p2p.Data{From: p}, `{"event":"data","from":"` + testPeer + `","data":"","data_b64":""}`},
		{"data channels", p2p.Data{From: p, Bytes: []byte("x"), Channel: 2, FromChannel: 1},
			`{"event":"data","from":"` + testPeer + `","data":"x","data_b64":"eA==","channel":2,"from_channel":1}`},
		{"status ok", p2p.Status{Peer: p, MsgID: 7, OK: true, Reason: p2p.ReasonOK},
			`{"event":"status","peer":"` + testPeer + `","id":7,"ok":true,"reason":"ok"}`},
		{"status failed", p2p.Status{Peer: p, MsgID: 8, Reason: p2p.ReasonDialFailed, Err: errors.New("no route\nto host")},
			`{"event":"status","peer":"` + testPeer + `","id":8,"ok":false,"reason":"dial_failed","error":"no route to host"}`},
		{"connected", p2p.Connected{Peer: p, Addr: ma.StringCast("/ip4/127.0.0.1/tcp/5"), Inbound: true},
			`{"event":"connected","peer":"` + testPeer + `","addr":"/ip4/127.0.0.1/tcp/5","direction":"inbound"}`},
		{"connected relayed", p2p.Connected{Peer: p, Addr: ma.StringCast("/ip4/127.0.0.1/tcp/5/p2p/" + testPeer + "/p2p-circuit"), Relayed: true},
			`{"event":"connected","peer":"` + testPeer + `","addr":"/ip4/127.0.0.1/tcp/5/p2p/` + testPeer + `/p2p-circuit","direction":"outbound","relayed":true}`},
		{"relay reservations", p2p.RelayReservations{Count: 2}, `{"event":"relay_reservations","count":2}`},
		{"hole punch ok", p2p.HolePunch{Peer: p, OK: true}, `{"event":"hole_punch","peer":"` + testPeer + `","ok":true}`},
		{"hole punch failed", p2p.HolePunch{Peer: p, Err: "all retries failed"},
			`{"event":"hole_punch","peer":"` + testPeer + `","ok":false,"error":"all retries failed"}`},
		{"hole punch ready", p2p.HolePunchReady{}, `{"event":"hole_punch_ready"}`},
		{"disconnected", p2p.Disconnected{Peer: p}, `{"event":"disconnected","peer":"` + testPeer + `"}`},
		{"connection limit peer", p2p.ConnectionLimit{Peer: p, Reason: ratelimit.MalformedMessage, Until: until},
			`{"event":"connection_limit","peer":"` + testPeer + `","reason":"malformed_message","until":"2026-01-02T03:04:05Z"}`},
		{"connection limit ip", p2p.ConnectionLimit{IP: netip.MustParseAddr("127.0.0.2"), Reason: ratelimit.UnknownPeer, Until: until},
			`{"event":"connection_limit","ip":"127.0.0.2","reason":"unknown_peer","until":"2026-01-02T03:04:05Z"}`},
		{"error", p2p.Error{Err: errors.New("stdin line 3: bad")}, `{"event":"error","error":"stdin line 3: bad"}`},
		{"error peer", p2p.Error{Peer: p, Err: errors.New("dial: refused")}, `{"event":"error","peer":"` + testPeer + `","error":"dial: refused"}`},
		{"dropped", p2p.Dropped{Peer: p, MsgID: 9, Count: 3}, `{"event":"dropped","peer":"` + testPeer + `","id":9,"count":3}`},
		{"reloaded", reloadedEvent{Kind: "allowlist", File: "a.yaml", Count: 2}, `{"event":"reloaded","kind":"allowlist","file":"a.yaml","count":2}`},
		{"listening membership", listeningEvent{Peer: p, Membership: 3},
			`{"event":"listening","peer":"` + testPeer + `","addrs":[],"membership_version":3}`},
		{"membership applied", gossip.Applied{Version: 2, From: p, Removed: []peer.ID{p}},
			`{"event":"membership_applied","version":2,"hash":"` + strings.Repeat("00", 32) + `","from":"` + testPeer + `","removed":["` + testPeer + `"]}`},
		{"membership applied locally", gossip.Applied{Version: 2},
			`{"event":"membership_applied","version":2,"hash":"` + strings.Repeat("00", 32) + `"}`},
		{"membership rejected", gossip.Rejected{From: p, Version: 2, Reason: gossip.ReasonThreshold, Charged: true, Err: errors.New("1 of 3")},
			`{"event":"membership_rejected","from":"` + testPeer + `","version":2,"reason":"threshold","charged":true,"error":"1 of 3"}`},
		{"membership behind", gossip.Behind{Peer: p, PeerVersion: 5, Version: 2},
			`{"event":"membership_behind","peer":"` + testPeer + `","peer_version":5,"version":2}`},
		{"unknown", struct{}{}, `{"event":"error","error":"unknown event struct {}"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := string(renderEvent(tc.ev, true))
			if got != tc.want+"\n" {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(got), &m); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRenderText(t *testing.T) {
	p := mustPeer(t, testPeer)
	cases := []struct {
		ev   any
		want string
	}{
		{listeningEvent{Peer: p, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1"), ma.StringCast("/ip6/::1/tcp/1")}},
			"listening as " + testPeer + " on /ip4/127.0.0.1/tcp/1 /ip6/::1/tcp/1 (ephemeral)"},
		{listeningEvent{Peer: p, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}, DataDir: "/var/lib/p2pnode"},
			"listening as " + testPeer + " on /ip4/127.0.0.1/tcp/1 (data in /var/lib/p2pnode)"},
		{listeningEvent{Peer: p, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}, DataDir: "/d", API: "/d/control.sock"},
			"listening as " + testPeer + " on /ip4/127.0.0.1/tcp/1 (data in /d) (control socket /d/control.sock)"},
		{p2p.Data{From: p, Bytes: []byte("hello")}, "data from " + testPeer + ": hello"},
		{p2p.Data{From: p, Bytes: []byte("two\nlines")}, "data from " + testPeer + `: "two\nlines"`},
		{p2p.Data{From: p, Bytes: []byte{0xff}}, "data from " + testPeer + ": (1 bytes, base64) /w=="},
		{p2p.Status{Peer: p, MsgID: 1, OK: true, Reason: p2p.ReasonOK}, "status " + testPeer + " #1: ok"},
		{p2p.Status{Peer: p, MsgID: 2, Reason: p2p.ReasonBusy}, "status " + testPeer + " #2: failed: busy"},
		{p2p.Disconnected{Peer: p}, "disconnected " + testPeer},
		{p2p.RelayReservations{Count: 0}, "relay reservations: none (peers cannot dial this node through its relays now)"},
		{p2p.HolePunch{Peer: p, OK: true}, "hole punch " + testPeer + ": ok, direct connection"},
		{p2p.Error{Err: errors.New("a\nb")}, "error: a b"},
	}
	for _, tc := range cases {
		got := string(renderEvent(tc.ev, false))
		if got != tc.want+"\n" {
			t.Errorf("got  %q\nwant %q", got, tc.want+"\n")
		}
	}
	// Every known event renders to a single line in both forms.
	for _, ev := range []any{p2p.Connected{Peer: p}, p2p.ConnectionLimit{Peer: p, Reason: ratelimit.UnansweredAck},
		p2p.Dropped{Peer: p, Count: 2}, reloadedEvent{Kind: "routes"},
		gossip.Applied{Version: 2}, gossip.Rejected{From: p, Reason: gossip.ReasonMalformed, Err: errors.New("a\nb")},
		gossip.Behind{Peer: p}, gossip.Conflict{Peer: p}} {
		for _, asJSON := range []bool{false, true} {
			line := string(renderEvent(ev, asJSON))
			if strings.Count(line, "\n") != 1 || strings.Contains(line, "unknown event") {
				t.Errorf("%T (json %v): %q", ev, asJSON, line)
			}
		}
	}
}

// A refused event, and the allowlist's name beside every peer ID of an
// event, in both forms.
func TestRenderRefusedAndNames(t *testing.T) {
	p := mustPeer(t, testPeer)
	names := namer(func(q peer.ID) string {
		if q == p {
			return "operator-2"
		}
		return ""
	})
	ip := netip.MustParseAddr("127.0.0.2")
	cases := []struct {
		ev         any
		json, text string
	}{
		{p2p.Refused{Peer: p, IP: ip, Reason: p2p.RefusedIPMismatch, Count: 1},
			`{"event":"refused","peer":"` + testPeer + `","peer_name":"operator-2","ip":"127.0.0.2","reason":"peer_ip_mismatch","count":1}`,
			"refused " + testPeer + " (operator-2) from 127.0.0.2: peer_ip_mismatch (its allowlist entry does not admit this IP)"},
		{p2p.Refused{IP: ip, Reason: p2p.RefusedIPNotAllowlisted, Count: 4},
			`{"event":"refused","ip":"127.0.0.2","reason":"ip_not_allowlisted","count":4}`,
			"refused a connection from 127.0.0.2: ip_not_allowlisted (no allowlist entry admits this IP), 4 times"},
		{p2p.Data{From: p, Bytes: []byte("hi")},
			`{"event":"data","from":"` + testPeer + `","from_name":"operator-2","data":"hi","data_b64":"aGk="}`,
			"data from " + testPeer + " (operator-2): hi"},
		{p2p.Connected{Peer: p, Inbound: true},
			`{"event":"connected","peer":"` + testPeer + `","peer_name":"operator-2","direction":"inbound"}`,
			"connected " + testPeer + " (operator-2), inbound"},
		{p2p.Status{Peer: p, MsgID: 3, OK: true, Reason: p2p.ReasonOK},
			`{"event":"status","peer":"` + testPeer + `","peer_name":"operator-2","id":3,"ok":true,"reason":"ok"}`,
			"status " + testPeer + " (operator-2) #3: ok"},
	}
	for _, tc := range cases {
		if got := string(renderNamed(tc.ev, true, names)); got != tc.json+"\n" {
			t.Errorf("json: got  %s\nwant %s", got, tc.json)
		}
		if got := string(renderNamed(tc.ev, false, names)); got != tc.text+"\n" {
			t.Errorf("text: got  %q\nwant %q", got, tc.text)
		}
	}
}
