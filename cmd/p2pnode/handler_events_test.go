package main

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/dht"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

func TestParseHandlerCommands(t *testing.T) {
	p := mustPeer(t, testPeer)
	full := "/ip4/127.0.0.1/tcp/4001/p2p/" + testPeer
	var parser commandParser
	cases := []struct {
		line string
		want any
	}{
		{`{"cmd":"request","addr":"` + full + `","data":"q"}`, requestCmd{Peer: p, Addr: ma.StringCast(full), ID: 1, Data: []byte("q")}},
		{`{"cmd":"request","peer":"` + testPeer + `","data_b64":"/wA=","id":9}`, requestCmd{Peer: p, ID: 9, Data: []byte{0xff, 0}}},
		// Sends and requests share the numbering.
		{`{"cmd":"send","peer":"` + testPeer + `","data":"s"}`, p2p.SendMsg{Peer: p, ID: 10, Data: []byte("s")}},
		{`{"cmd":"respond","peer":"` + testPeer + `","exchange":"00000000000000ff","data":"a"}`, respondCmd{Peer: p, Exchange: 0xff, Data: []byte("a")}},
	}
	for _, tc := range cases {
		got, err := parser.parse([]byte(tc.line))
		if err != nil {
			t.Errorf("%s: %v", tc.line, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got  %#v\n want %#v", tc.line, got, tc.want)
		}
	}
	bad := []struct{ line, want string }{
		{`{"cmd":"request","peer":"` + testPeer + `"}`, `request needs "data" or "data_b64"`},
		{`{"cmd":"request","peer":"` + testPeer + `","data":"x","channel":2}`, `request takes no "channel"`},
		{`{"cmd":"request","peer":"` + testPeer + `","data":"x","exchange":"01"}`, `request takes no "exchange"`},
		{`{"cmd":"respond","peer":"` + testPeer + `","data":"x"}`, `respond needs "exchange"`},
		{`{"cmd":"respond","peer":"` + testPeer + `","exchange":"zz","data":"x"}`, `exchange "zz"`},
		{`{"cmd":"respond","peer":"` + testPeer + `","exchange":"0","data":"x"}`, `exchange "0"`},
		{`{"cmd":"respond","peer":"` + testPeer + `","exchange":"01"}`, `respond needs "data" or "data_b64"`},
		{`{"cmd":"respond","peer":"` + testPeer + `","exchange":"01","data":"x","id":3}`, `respond takes no "id"`},
		{`{"cmd":"respond","exchange":"01","data":"x"}`, `no "peer"`},
		{`{"cmd":"send","peer":"` + testPeer + `","data":"x","exchange":"01"}`, `send takes no "exchange"`},
		{`{"cmd":"dial","addr":"` + full + `","exchange":"01"}`, `dial takes no "exchange"`},
		{`{"cmd":"ask","peer":"` + testPeer + `"}`, "want dial, send, request, respond or disconnect"},
	}
	for _, tc := range bad {
		if _, err := parser.parse([]byte(tc.line)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.line, err, tc.want)
		}
	}
}

// The handler's and the DHT's events render to their documented JSON.
func TestRenderHandlerEvents(t *testing.T) {
	p := mustPeer(t, testPeer)
	exp := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	refused := &handler.AckError{Reason: p2p.ReasonBusy}
	cases := []struct {
		name string
		ev   any
		json string
		text string
	}{
		{"request", &handler.Request{From: p, Exchange: 0xab, Data: []byte("q")},
			`{"event":"request","from":"` + testPeer + `","exchange":"00000000000000ab","data":"q","data_b64":"cQ=="}`,
			"request from " + testPeer + " #00000000000000ab: q"},
		{"request redelivered", &handler.Request{From: p, Exchange: 0xab, Data: []byte("q"), Redelivered: true},
			`{"event":"request","from":"` + testPeer + `","exchange":"00000000000000ab","data":"q","data_b64":"cQ==","redelivered":true}`,
			"request from " + testPeer + " #00000000000000ab (redelivered): q"},
		{"message", &handler.Message{From: p, Exchange: 0xab, Data: []byte("m")},
			`{"event":"data","from":"` + testPeer + `","data":"m","data_b64":"bQ=="}`,
			"data from " + testPeer + ": m"},
		{"message redelivered", &handler.Message{From: p, Exchange: 0xab, Data: []byte{0xff}, Redelivered: true},
			`{"event":"data","from":"` + testPeer + `","data_b64":"/w==","redelivered":true}`,
			"data from " + testPeer + " (redelivered): (1 bytes, base64) /w=="},
		{"reply", replyEvent{Reply: handler.Reply{From: p, Exchange: 0xab, Data: []byte{0xff}}, ID: 4},
			`{"event":"reply","from":"` + testPeer + `","exchange":"00000000000000ab","id":4,"data_b64":"/w=="}`,
			"reply from " + testPeer + " #00000000000000ab (id 4): (1 bytes, base64) /w=="},
		{"exchange ok", exchangeEvent{Outcome: handler.Outcome{Peer: p, Exchange: 0xab, Role: handler.Responder, Kind: handler.KindRequest,
			OK: true, State: handler.StateDone, Stage: handler.StateAwaitAck, Reason: handler.ReasonOK, Attempts: 1, Duration: 1500 * time.Microsecond}},
			`{"event":"exchange","peer":"` + testPeer + `","exchange":"00000000000000ab","kind":"request","role":"responder","ok":true,"reason":"ok","attempts":1,"duration_ms":1.5}`,
			"exchange " + testPeer + " #00000000000000ab (request, responder): ok in 1.5ms"},
		{"exchange failed", exchangeEvent{ID: 7, Outcome: handler.Outcome{Peer: p, Exchange: 0xab, Role: handler.Dialer, Kind: handler.KindMessage,
			State: handler.StateFailed, Stage: handler.StateBackoff, Reason: handler.ReasonNotAcked, Err: refused, Attempts: 5, Duration: time.Second}},
			`{"event":"exchange","peer":"` + testPeer + `","exchange":"00000000000000ab","id":7,"kind":"message","role":"dialer","ok":false,"reason":"not_acked","stage":"backoff","error":"handler: send failed: busy","attempts":5,"duration_ms":1000}`,
			"exchange " + testPeer + " #00000000000000ab (message, dialer, id 7): failed: not_acked in backoff after 5 attempts (handler: send failed: busy)"},
		{"exchange resumed, dead-lettered", exchangeEvent{ID: 42, Outcome: handler.Outcome{Peer: p, Exchange: 0xab, Role: handler.Dialer, Kind: handler.KindRequest,
			State: handler.StateFailed, Stage: handler.StateDialing, Reason: handler.ReasonDialFailed, Attempts: 2, Duration: time.Second,
			Tag: "42", Resumed: true, DeadLettered: true}},
			`{"event":"exchange","peer":"` + testPeer + `","exchange":"00000000000000ab","id":42,"kind":"request","role":"dialer","ok":false,"reason":"dial_failed","stage":"dialing","attempts":2,"duration_ms":1000,"resumed":true,"dead_lettered":true}`,
			"exchange " + testPeer + " #00000000000000ab (request, dialer, id 42, resumed): failed: dial_failed in dialing after 2 attempts; kept in the dead letters"},
		{"dht ready", dhtReadyEvent{Peers: 3}, `{"event":"dht_ready","peers":3}`, "dht ready: 3 peers in the routing table"},
		{"published", publishedEvent{Record: dht.Record{Peer: p, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/5")}, Seq: 9, Expires: exp}},
			`{"event":"published","addrs":["/ip4/127.0.0.1/tcp/5"],"seq":9,"expires":"2026-01-02T03:04:05Z"}`,
			"dht record published: /ip4/127.0.0.1/tcp/5, expires 2026-01-02T03:04:05Z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(renderEvent(tc.ev, true)); got != tc.json+"\n" {
				t.Fatalf("json\n got  %s\n want %s", got, tc.json)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(tc.json), &m); err != nil {
				t.Fatal(err)
			}
			if got := string(renderEvent(tc.ev, false)); got != tc.text+"\n" {
				t.Fatalf("text\n got  %q\n want %q", got, tc.text)
			}
		})
	}
}

// A send's status carries the p2p reason when the handler has one, so that
// it reads as it did before the handler.
func TestSendStatus(t *testing.T) {
	p := mustPeer(t, testPeer)
	ok := sendStatus(handler.Outcome{Peer: p, OK: true, Reason: handler.ReasonOK}, 3)
	if ok != (p2p.Status{Peer: p, MsgID: 3, OK: true, Reason: p2p.ReasonOK}) {
		t.Fatalf("ok: %+v", ok)
	}
	st := sendStatus(handler.Outcome{Peer: p, Reason: handler.ReasonDialFailed, Err: &handler.AckError{Reason: p2p.ReasonNotConnected}}, 4)
	if st.OK || st.Reason != p2p.ReasonNotConnected || st.MsgID != 4 {
		t.Fatalf("failed: %+v", st)
	}
	if st := sendStatus(handler.Outcome{Peer: p, Reason: handler.ReasonClosed, Err: handler.ErrClosed}, 5); st.Reason != "closed" {
		t.Fatalf("closed: %+v", st)
	}
	if st := refusedStatus(p, 6, errors.Join(handler.ErrTooLarge)); st.Reason != p2p.ReasonTooLarge || st.OK {
		t.Fatalf("too large: %+v", st)
	}
	if st := refusedStatus(p, 7, p2p.ErrNotAllowlisted); st.Reason != p2p.ReasonRejected {
		t.Fatalf("not allowlisted: %+v", st)
	}
}

func TestPhasesNeverPairBothWays(t *testing.T) {
	for n := 2; n <= 8; n++ {
		asked := map[[2]int]int{}
		for _, ph := range phases(n) {
			for i, j := range ph {
				if j < 0 {
					continue
				}
				if ph[j] == i {
					t.Fatalf("n=%d: %d and %d ask each other in one phase %v", n, i, j, ph)
				}
				asked[[2]int{i, j}]++
			}
		}
		if len(asked) != n*(n-1) {
			t.Fatalf("n=%d: %d pairs asked, want %d", n, len(asked), n*(n-1))
		}
		for pair, c := range asked {
			if c != 1 || pair[0] == pair[1] {
				t.Fatalf("n=%d: pair %v asked %d times", n, pair, c)
			}
		}
	}
}
