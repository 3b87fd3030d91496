package allowlist

import (
	"errors"
	"slices"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse and ParseRoutes. Neither may
// panic; every error must be a *ParseError with a line; and whatever parses
// must survive a Save/Load round trip unchanged, or Save could write a file
// that the node then refuses (or worse, reads differently) on restart.
func FuzzParse(f *testing.F) {
	const id = "16Uiu2HAmUQrpLvoQn9oBDez7bb4RJfHHq8DQ4H6UqtoMgkNyiCMf"
	seeds := []string{
		"",
		"peers: []\n",
		"peers:\n  - id: " + id + "\n    name: operator-2\n    addrs: [127.0.0.2, 10.1.0.0/16]\n",
		"peers:\n  - id: " + id + "\n    addrs:\n      - ::ffff:10.0.0.1\n      - 2001:db8::/32\n",
		"peers:\n  - id: " + id + "\n  - id: " + id + "\n",
		"peers:\n  - id: xyz\n",
		"peers:\n  - id: " + id + "\n    addrs: [10.0.0.0/33]\n",
		"peers:\n  - id: " + id + "\n    nmae: x\n",
		"peers: [\n",
		"peers:\n  - &a\n    id: " + id + "\n  - *a\n",
		"a: &a [*a]\n",
		"peers: {}\n---\npeers: []\n",
		"routes: []\n",
		"routes:\n  - from: " + id + "\n    from_channel: 1\n    to_channel: 2\n",
		"routes:\n  - from: '*'\n    to_channel: 4294967295\n",
		"routes:\n  - from: *\n",
		"routes:\n  - from: '*'\n    from_channel: -1\n",
		"\xef\xbb\xbfpeers: []\n",
		"peers: [\x00]",
		"peers:\n  - id: " + id + "\n    name: \"\\u0085 \\t 'quoted' # not a comment\"\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := Parse(data)
		checkParseError(t, "Parse", err)
		if err == nil {
			checkEntriesRoundTrip(t, entries)
		}
		rules, err := ParseRoutes(data)
		checkParseError(t, "ParseRoutes", err)
		if err == nil {
			checkRoutesRoundTrip(t, rules)
		}
	})
}

func checkParseError(t *testing.T, fn string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("%s: error %v (%T) is not a *ParseError", fn, err, err)
	}
	if pe.Line < 1 {
		t.Fatalf("%s: error %v names no line", fn, err)
	}
}

func checkEntriesRoundTrip(t *testing.T, entries []Entry) {
	t.Helper()
	l, err := New(entries...)
	if err != nil {
		t.Fatalf("New rejected what Parse accepted: %v", err)
	}
	out, err := marshalEntries(l.load().sorted())
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	again, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse rejected what Save wrote: %v\n%s", err, out)
	}
	l2, err := New(again...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(l.Entries(), l2.Entries(), Entry.equal) {
		t.Fatalf("round trip changed the list:\n%+v\n%+v\n%s", l.Entries(), l2.Entries(), out)
	}
}

func checkRoutesRoundTrip(t *testing.T, rules []Route) {
	t.Helper()
	r, err := NewRoutes(rules...)
	if err != nil {
		t.Fatalf("NewRoutes rejected what ParseRoutes accepted: %v", err)
	}
	out, err := marshalRoutes(r.Rules())
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	again, err := ParseRoutes(out)
	if err != nil {
		t.Fatalf("ParseRoutes rejected what Save wrote: %v\n%s", err, out)
	}
	r2, err := NewRoutes(again...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Rules(), r2.Rules()) {
		t.Fatalf("round trip changed the table:\n%v\n%v\n%s", r.Rules(), r2.Rules(), out)
	}
}
