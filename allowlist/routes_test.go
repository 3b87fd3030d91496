package allowlist

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestRoutesPermits(t *testing.T) {
	ids := newIDs(t, 3)
	a, b, c := ids[0], ids[1], ids[2]
	r, err := NewRoutes(
		Route{FromPeer: a, FromChannel: 1, ToChannel: 2},                   // exact
		Route{FromPeer: a, FromChannel: 3, ToChannel: AnyChannel},          // from channel to any
		Route{FromPeer: a, FromChannel: AnyChannel, ToChannel: 4},          // any channel to one
		Route{FromPeer: b, FromChannel: AnyChannel, ToChannel: AnyChannel}, // peer-wide
		Route{FromPeer: "", FromChannel: 7, ToChannel: 8},                  // any peer, exact channels
		Route{FromPeer: "", FromChannel: AnyChannel, ToChannel: 9},         // any peer to 9
		Route{FromPeer: "", FromChannel: 10, ToChannel: AnyChannel},        // any peer from 10
	)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		from      peer.ID
		fromCh    uint32
		toCh      uint32
		permits   bool
		becauseOf string
	}{
		{a, 1, 2, true, "exact"},
		{a, 1, 3, false, "exact, other to"},
		{a, 2, 2, false, "exact, other from"},
		{a, 3, 0, true, "from 3 to any"},
		{a, 3, 1<<32 - 1, true, "from 3 to any, max channel"},
		{a, 0, 4, true, "any to 4"},
		{a, 1<<32 - 1, 4, true, "any to 4, max channel"},
		{a, 0, 5, false, "no rule"},
		{b, 123, 456, true, "peer-wide"},
		{c, 7, 8, true, "any peer, exact"},
		{a, 7, 8, true, "any peer applies to listed peers too"},
		{c, 7, 9, true, "any peer to 9"},
		{c, 7, 10, false, "any peer: no match"},
		{c, 10, 0, true, "any peer from 10"},
		{c, 1, 2, false, "another peer's rule"},
		{"", 1, 2, false, "unknown sender"},
	}
	for _, tt := range tests {
		if got := r.Permits(tt.from, tt.fromCh, tt.toCh); got != tt.permits {
			t.Errorf("Permits(%s, %d, %d) = %v, want %v (%s)", tt.from.ShortString(), tt.fromCh, tt.toCh, got, tt.permits, tt.becauseOf)
		}
	}
}

func TestRoutesAnyToAny(t *testing.T) {
	r, err := NewRoutes(Route{FromChannel: AnyChannel, ToChannel: AnyChannel})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Permits(newID(t), 5, 6) {
		t.Error("*:* -> * denied a message")
	}
}

func TestRoutesNilAndEmpty(t *testing.T) {
	id := newID(t)
	var none *Routes
	if !none.Permits(id, 1, 2) {
		t.Error("nil Routes must permit everything")
	}
	if none.Rules() != nil {
		t.Error("nil Routes has rules")
	}
	if err := none.Save(filepath.Join(t.TempDir(), "r.yaml")); err == nil {
		t.Error("saving a nil table succeeded")
	}
	empty, err := NewRoutes()
	if err != nil {
		t.Fatal(err)
	}
	if empty.Permits(id, 1, 2) {
		t.Error("empty table must permit nothing")
	}
	var zero Routes
	if zero.Permits(id, 1, 2) {
		t.Error("zero Routes must permit nothing")
	}
}

func TestRoutesMutations(t *testing.T) {
	id := newID(t)
	exact := Route{FromPeer: id, FromChannel: 1, ToChannel: 2}
	wide := Route{FromPeer: "", FromChannel: AnyChannel, ToChannel: 2}
	var r Routes

	if err := r.Add(exact); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(exact); err != nil {
		t.Errorf("adding an existing rule: %v", err)
	}
	if !r.Permits(id, 1, 2) || len(r.Rules()) != 1 {
		t.Error("Add had no effect")
	}
	if err := r.Add(Route{FromPeer: "nope", FromChannel: 1}); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Add(bad peer) = %v", err)
	}
	for _, ch := range []Channel{-2, MaxChannel + 1} {
		if err := r.Add(Route{FromChannel: ch, ToChannel: 1}); !errors.Is(err, ErrInvalidChannel) {
			t.Errorf("Add(channel %d) = %v", ch, err)
		}
	}
	if err := r.Replace([]Route{exact, wide}); err != nil {
		t.Fatal(err)
	}
	if want := []Route{wide, exact}; !slices.Equal(r.Rules(), want) {
		t.Errorf("Rules = %v, want %v (wildcard peer first)", r.Rules(), want)
	}
	if !r.Remove(wide) || r.Remove(wide) {
		t.Error("Remove did not report presence correctly")
	}
	if r.Permits(newID(t), 0, 2) {
		t.Error("removed rule still permits")
	}
	if err := r.Replace([]Route{exact, exact}); !errors.Is(err, ErrDuplicateRoute) {
		t.Errorf("Replace with duplicate = %v", err)
	}
	if !slices.Equal(r.Rules(), []Route{exact}) {
		t.Error("a failed Replace changed the table")
	}
}

func TestParseRoutes(t *testing.T) {
	id := newID(t)
	doc := `routes:
  - from: ` + id.String() + `
    from_channel: 1
    to_channel: 2
  - from: "*"
    to_channel: 0
  - from: '*'
    from_channel: "*"
    to_channel: 4294967295
`
	got, err := ParseRoutes([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{
		{FromPeer: id, FromChannel: 1, ToChannel: 2},
		{FromChannel: AnyChannel, ToChannel: 0},
		{FromChannel: AnyChannel, ToChannel: MaxChannel},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ParseRoutes = %v, want %v", got, want)
	}
	for _, empty := range []string{"", "routes: []", "routes:"} {
		if got, err := ParseRoutes([]byte(empty)); err != nil || len(got) != 0 {
			t.Errorf("ParseRoutes(%q) = %v, %v", empty, got, err)
		}
	}
}

func TestParseRoutesErrors(t *testing.T) {
	id := newID(t).String()
	tests := []struct {
		name string
		doc  string
		line int
		msg  string
		is   error
	}{
		{"bad peer", "routes:\n  - from: xyz\n", 2, `"xyz" is not a peer ID`, ErrInvalidID},
		{"missing from", "routes:\n  - to_channel: 1\n", 2, `no "from"`, nil},
		{"negative channel", "routes:\n  - from: '*'\n    to_channel: -1\n", 3, `"-1" is not a channel`, ErrInvalidChannel},
		{"too big", "routes:\n  - from: '*'\n    from_channel: 4294967296\n", 3, "not a channel", ErrInvalidChannel},
		{"hex", "routes:\n  - from: '*'\n    from_channel: 0x10\n", 3, "not a channel", ErrInvalidChannel},
		{"leading zero", "routes:\n  - from: '*'\n    from_channel: 010\n", 3, "not a channel", ErrInvalidChannel},
		{"word", "routes:\n  - from: '*'\n    to_channel: any\n", 3, "not a channel", ErrInvalidChannel},
		{"channel list", "routes:\n  - from: '*'\n    to_channel: [1]\n", 3, "to_channel must be a value", nil},
		{"unknown key", "routes:\n  - from: '*'\n    to: 1\n", 3, `unknown key "to" in route`, nil},
		{"unknown top key", "route:\n  - from: '*'\n", 1, `unknown key "route"`, nil},
		{"duplicate", "routes:\n  - from: " + id + "\n  - from: " + id + "\n    from_channel: '*'\n", 3, "already listed at line 2", ErrDuplicateRoute},
		{"routes is a mapping", "routes:\n  from: '*'\n", 2, "routes must be a list", nil},
		{"bare star", "routes:\n  - from: *\n", 2, `quote it: "*"`, nil},
		{"not yaml", "routes: [\n", 1, "did not find expected", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRoutes([]byte(tt.doc))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v (%T), want a *ParseError", err, err)
			}
			if pe.Line != tt.line {
				t.Errorf("line = %d, want %d (%v)", pe.Line, tt.line, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not match %v", err, tt.is)
			}
		})
	}
}

func TestRoutesSaveLoad(t *testing.T) {
	ids := newIDs(t, 2)
	r, err := NewRoutes(
		Route{FromPeer: ids[0], FromChannel: 1, ToChannel: 2},
		Route{FromPeer: ids[1], FromChannel: AnyChannel, ToChannel: AnyChannel},
		Route{FromChannel: 0, ToChannel: MaxChannel},
	)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "routes.yaml")
	if err := r.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadRoutes(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Rules(), r.Rules()) {
		t.Errorf("round trip: got %v, want %v", got.Rules(), r.Rules())
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v", fi.Mode().Perm())
	}

	// Reload: a good file replaces the table, a broken one keeps it.
	if err := os.WriteFile(path, []byte("routes:\n  - from: '*'\n    to_channel: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := got.Reload(path); err != nil {
		t.Fatal(err)
	}
	if !got.Permits(newID(t), 0, 5) || got.Permits(ids[0], 1, 2) {
		t.Error("Reload did not replace the table")
	}
	if err := os.WriteFile(path, []byte("routes:\n  - from: '*'\n    to_chanel: 6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = got.Reload(path)
	if err == nil || !strings.Contains(err.Error(), path+": line 3:") {
		t.Errorf("Reload(broken) = %v", err)
	}
	if !got.Permits(newID(t), 0, 5) {
		t.Error("failed Reload changed the table")
	}

	if _, err := LoadRoutes(filepath.Join(t.TempDir(), "none.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadRoutes(missing) = %v", err)
	}
}

func TestRouteString(t *testing.T) {
	id := newID(t)
	if got, want := (Route{FromPeer: id, FromChannel: 1, ToChannel: AnyChannel}).String(), id.String()+":1 -> *"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got := (Route{FromChannel: AnyChannel, ToChannel: 3}).String(); got != "*:* -> 3" {
		t.Errorf("String = %q", got)
	}
}
