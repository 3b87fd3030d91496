package ratelimit_test

import (
	"encoding/json"
	"errors"
	"regexp"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

func TestReasonNamesAreStable(t *testing.T) {
	// These strings are Prometheus labels and JSON values in the wild:
	// changing one is a breaking change, so the test spells them out.
	want := []string{
		"failed_handshake", "peer_ip_mismatch", "unknown_peer", "malformed_message",
		"oversized_message", "unanswered_ack", "protocol_violation", "unauthorized",
		"declined_handshake",
	}
	rs := ratelimit.Reasons()
	if len(rs) != len(want) {
		t.Fatalf("Reasons() has %d, want %d", len(rs), len(want))
	}
	snake := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	for i, r := range rs {
		if r != ratelimit.Reason(i+1) {
			t.Errorf("Reasons()[%d] = %d, want %d", i, r, i+1)
		}
		if got := r.String(); got != want[i] || !snake.MatchString(got) {
			t.Errorf("Reason(%d).String() = %q, want %q", r, got, want[i])
		}
		back, err := ratelimit.ParseReason(r.String())
		if err != nil || back != r {
			t.Errorf("ParseReason(%q) = %v, %v; want %v", r.String(), back, err, r)
		}
	}
	rs[0] = 99
	if ratelimit.Reasons()[0] != ratelimit.FailedHandshake {
		t.Error("Reasons() returns shared state")
	}
}

func TestParseReasonRejects(t *testing.T) {
	for _, s := range []string{"", "Failed_Handshake", "failed handshake", "Reason(0)", "Reason(10)", "unknown"} {
		if r, err := ratelimit.ParseReason(s); !errors.Is(err, ratelimit.ErrUnknownReason) {
			t.Errorf("ParseReason(%q) = %v, %v; want ErrUnknownReason", s, r, err)
		}
	}
	for _, r := range []ratelimit.Reason{0, 10, 255} {
		if _, err := ratelimit.ParseReason(r.String()); err == nil {
			t.Errorf("undeclared %s parsed", r)
		}
	}
}

func TestReasonJSON(t *testing.T) {
	type event struct {
		Reason ratelimit.Reason `json:"reason"`
	}
	b, err := json.Marshal(event{ratelimit.OversizedMessage})
	if err != nil || string(b) != `{"reason":"oversized_message"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var e event
	if err := json.Unmarshal(b, &e); err != nil || e.Reason != ratelimit.OversizedMessage {
		t.Fatalf("Unmarshal = %+v, %v", e, err)
	}
	if err := json.Unmarshal([]byte(`{"reason":"nope"}`), &e); !errors.Is(err, ratelimit.ErrUnknownReason) {
		t.Fatalf("Unmarshal of an unknown name: %v", err)
	}
	if _, err := json.Marshal(event{0}); !errors.Is(err, ratelimit.ErrUnknownReason) {
		t.Fatalf("Marshal of Reason(0): %v", err)
	}
}
