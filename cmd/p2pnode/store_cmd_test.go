package main

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// run's stdin ids travel as decimal tags; anything else is no id.
func TestTagID(t *testing.T) {
	for tag, want := range map[string]uint64{"42": 42, "1": 1, "18446744073709551615": 1<<64 - 1} {
		if got, ok := tagID(tag); !ok || got != want {
			t.Errorf("tagID(%q) = %d, %v", tag, got, ok)
		}
	}
	for _, tag := range []string{"", "-1", "x", "4 2", "18446744073709551616"} {
		if got, ok := tagID(tag); ok {
			t.Errorf("tagID(%q) = %d, want none", tag, got)
		}
	}
}

// A payload preview is one table cell: short text as is, text with spaces
// or control characters quoted, long text cut, binary named.
func TestPreview(t *testing.T) {
	long := strings.Repeat("a", previewRunes+5)
	for in, want := range map[string]string{
		"":           "-",
		"hello":      "hello",
		"two words":  `"two words"`,
		"line\nnext": `"line\nnext"`,
		"\xff\x00":   "(binary)",
		long:         `"` + long[:previewRunes] + `"...`,
	} {
		if got := preview([]byte(in), int64(len(in)), utf8.ValidString(in)); got != want {
			t.Errorf("preview(%q) = %q, want %q", in, got, want)
		}
		// A list without payloads sends the head alone: the same cell.
		head := storedPB(store.Outgoing{Payload: []byte(in + strings.Repeat("é", 200))}, false)
		whole := []byte(in + strings.Repeat("é", 200))
		if got, want := preview(head.Payload, head.PayloadSize, head.PayloadUtf8), preview(whole, int64(len(whole)), utf8.Valid(whole)); got != want {
			t.Errorf("preview of the %d-byte head of %q = %q, of the whole %q", len(head.Payload), in, got, want)
		}
	}
}

// Exchange IDs on the command line: the 16 hex digits, each once; a bad
// one is a usage error.
func TestParseExchangeArgs(t *testing.T) {
	ids, err := parseExchangeArgs([]string{"00000000000000ab", "00000000000000AB", "3f2a9c0d4e5b6a71"})
	if err != nil || len(ids) != 2 || ids[0] != 0xab || ids[1] != 0x3f2a9c0d4e5b6a71 {
		t.Fatalf("%v, %v", ids, err)
	}
	// Fewer digits: more likely a stdin id than an exchange's.
	for _, bad := range []string{"", "0", "ab", "123", "xyz", "1234567890abcdef0", "0000000000000000"} {
		if _, err := parseExchangeArgs([]string{bad}); err == nil || exitCode(err) != exitUsage {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
