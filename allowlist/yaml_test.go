package allowlist

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	ids := newIDs(t, 3)
	doc := `# operators of the federation
peers:
  - id: ` + ids[0].String() + `            # libp2p peer ID
    name: operator-2
    addrs: [127.0.0.2, 10.1.0.0/16]
  - id: ` + ids[1].String() + `
  - id: "` + ids[2].String() + `"
    name: ~
    addrs:
      - 2001:db8::/32
      - ::ffff:192.0.2.7
`
	got, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{ID: ids[0], Name: "operator-2", Addrs: prefixes(t, "127.0.0.2/32", "10.1.0.0/16")},
		{ID: ids[1]},
		{ID: ids[2], Addrs: prefixes(t, "2001:db8::/32", "192.0.2.7/32")},
	}
	if !slices.EqualFunc(got, want, Entry.equal) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, doc := range []string{"", "\n", "# nobody yet\n", "---\n", "~", "{}", "peers:", "peers: []", "peers: ~"} {
		got, err := Parse([]byte(doc))
		if err != nil || len(got) != 0 {
			t.Errorf("Parse(%q) = %v, %v; want an empty list", doc, got, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	ids := newIDs(t, 1)
	id := ids[0].String()
	tests := []struct {
		name string
		doc  string
		line int
		msg  string
		is   error // nil: no sentinel applies
	}{
		{"bad id", "peers:\n  - id: " + id + "\n\n  - id: xyz\n", 4, `"xyz" is not a peer ID`, ErrInvalidID},
		{"empty id", "peers:\n  - id: \"\"\n", 2, "empty peer ID", ErrInvalidID},
		{"missing id", "peers:\n  - name: op\n", 2, "has no id", nil},
		{"null id", "peers:\n  - id:\n    name: op\n", 2, "id must be a value", nil},
		{"bad cidr", "peers:\n  - id: " + id + "\n    addrs: [10.0.0.0/33]\n", 3, `"10.0.0.0/33" is not a CIDR prefix`, ErrInvalidAddr},
		{"bad ip", "peers:\n  - id: " + id + "\n    addrs:\n      - 10.0.0.1\n      - 10.0.0\n", 5, `"10.0.0"`, ErrInvalidAddr},
		{"zone", "peers:\n  - id: " + id + "\n    addrs: [fe80::1%eth0]\n", 3, "zones", ErrInvalidAddr},
		{"duplicate peer", "peers:\n  - id: " + id + "\n  - id: " + id + "\n", 3, "already listed at line 2", ErrDuplicateID},
		{"unknown top key", "peers: []\npeer: []\n", 2, `unknown key "peer"`, nil},
		{"unknown entry key", "peers:\n  - id: " + id + "\n    nmae: op\n", 3, `unknown key "nmae" in peer entry`, nil},
		{"repeated key", "peers:\n  - id: " + id + "\n    id: " + id + "\n", 3, `key "id" repeated`, nil},
		{"not yaml", "peers: [\n", 1, "did not find expected", nil},
		{"tab indent", "peers:\n\t- id: x\n", 2, "found character", nil},
		{"control char", "peers:\n  - id: a\x00\n", 2, "control character", nil},
		{"invalid utf8", "peers: []\n# \xff\n", 2, "UTF-8", nil},
		{"two documents", "peers: []\n---\npeers: []\n", 2, "one YAML document", nil},
		{"top is a list", "- id: " + id + "\n", 1, "must be a mapping, got a list", nil},
		{"top is a scalar", "hello\n", 1, "must be a mapping", nil},
		{"peers is a mapping", "peers:\n  id: " + id + "\n", 2, "peers must be a list, got a mapping", nil},
		{"peers is a scalar", "peers: everyone\n", 1, `peers must be a list, got "everyone"`, nil},
		{"entry is a scalar", "peers:\n  - " + id + "\n", 2, "peer entry must be a mapping", nil},
		{"id is a list", "peers:\n  - id: [" + id + "]\n", 2, "id must be a value, got a list", nil},
		{"name is a mapping", "peers:\n  - id: " + id + "\n    name: {a: b}\n", 3, "name must be a value", nil},
		{"addrs is a scalar", "peers:\n  - id: " + id + "\n    addrs: 10.0.0.1\n", 3, "addrs must be a list", nil},
		{"addr is a list", "peers:\n  - id: " + id + "\n    addrs: [[10.0.0.1]]\n", 3, "address must be a value", nil},
		{"alias", "peers:\n  - &p\n    id: " + id + "\n  - *p\n", 4, "aliases are not supported", nil},
		{"unknown anchor", "peers:\n  - id: a\n  - *nope\n", 3, "unknown anchor", nil},
		{"complex key", "peers:\n  - ? [a]\n    : b\n", 2, "not a name", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse succeeded with %v", entries)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *ParseError", err, err)
			}
			if pe.Line != tt.line {
				t.Errorf("line = %d, want %d (%v)", pe.Line, tt.line, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), "allowlist: line ") {
				t.Errorf("error %q does not start with \"allowlist: line \"", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not match %v", err, tt.is)
			}
		})
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	ids := newIDs(t, 4)
	l := mustNew(t,
		Entry{ID: ids[0], Name: "operator-2", Addrs: prefixes(t, "127.0.0.2", "10.1.0.0/16")},
		Entry{ID: ids[1]},
		Entry{ID: ids[2], Name: "needs: quoting # really", Addrs: prefixes(t, "2001:db8::1", "2001:db8:1::/48")},
		Entry{ID: ids[3], Name: "*"},
	)
	path := filepath.Join(t.TempDir(), "peers.yaml")
	if err := l.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got.Entries(), l.Entries(), Entry.equal) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got.Entries(), l.Entries())
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644", fi.Mode().Perm())
	}
	dirEntries, _ := os.ReadDir(filepath.Dir(path))
	if len(dirEntries) != 1 {
		t.Errorf("Save left files behind: %v", dirEntries)
	}

	// Stable output: saving the loaded list gives the same bytes.
	first, _ := os.ReadFile(path)
	if err := got.Save(path); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(path)
	if string(first) != string(second) {
		t.Errorf("Save is not stable:\n%s\n---\n%s", first, second)
	}
	// Single addresses are written bare, as an operator writes them.
	if !strings.Contains(string(first), "addrs: [127.0.0.2, 10.1.0.0/16]") {
		t.Errorf("unexpected shape:\n%s", first)
	}
}

func TestSaveEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.yaml")
	if err := mustNew(t).Save(path); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if string(data) != "peers: []\nallow_empty: true\n" {
		t.Errorf("empty list saved as %q", data)
	}
	l, err := Load(path)
	if err != nil || l.Len() != 0 {
		t.Errorf("Load of saved empty list = %v, %v", l, err)
	}
}

func TestSaveErrors(t *testing.T) {
	l := mustNew(t)
	err := l.Save(filepath.Join(t.TempDir(), "missing-dir", "peers.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Save into a missing directory: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	_, err := Load(missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(missing) = %v; want fs.ErrNotExist naming the path", err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("peers:\n  - id: "+newID(t).String()+"\n    addrs: [300.1.1.1]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	want := "allowlist: " + bad + ": line 3: "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Load(bad) = %v; want prefix %q", err, want)
	}
	if !errors.Is(err, ErrInvalidAddr) {
		t.Errorf("Load(bad) = %v; want ErrInvalidAddr", err)
	}

	if _, err := Load(dir); err == nil {
		t.Error("Load of a directory succeeded")
	}
}

func TestReload(t *testing.T) {
	ids := newIDs(t, 2)
	path := filepath.Join(t.TempDir(), "peers.yaml")
	l := mustNew(t, Entry{ID: ids[0]})
	var changes []Change
	l.OnChange(func(c Change) { changes = append(changes, c) })

	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("peers:\n  - id: " + ids[1].String() + "\n")
	if err := l.Reload(path); err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || !slices.Equal(entryIDs(changes[0].Added), ids[1:]) || !slices.Equal(entryIDs(changes[0].Removed), ids[:1]) {
		t.Errorf("Reload changes = %+v", changes)
	}

	write("peers:\n  - id: " + ids[0].String() + "\n    adrs: [10.0.0.1]\n")
	err := l.Reload(path)
	if err == nil || !strings.Contains(err.Error(), path+": line 3:") {
		t.Errorf("Reload(broken) = %v; want an error naming %s and line 3", err, path)
	}
	if !slices.Equal(entryIDs(l.Entries()), ids[1:]) || len(changes) != 1 {
		t.Error("a failed Reload changed the list")
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := l.Reload(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Reload(missing) = %v", err)
	}
	if l.Len() != 1 {
		t.Error("a missing file emptied the list")
	}
	if !l.Allowed(ids[1], netip.MustParseAddr("192.0.2.1")) {
		t.Error("old list not kept")
	}
}

// A reload to a file that lists nobody (truncated, half written) keeps the
// list, unless the file says allow_empty: true; a bad allow_empty value
// names its line.
func TestReloadEmpty(t *testing.T) {
	ids := newIDs(t, 1)
	path := filepath.Join(t.TempDir(), "peers.yaml")
	l := mustNew(t, Entry{ID: ids[0]})
	for _, doc := range []string{"", "peers: []\n", "peers: []\nallow_empty: false\n"} {
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		err := l.Reload(path)
		if !errors.Is(err, ErrEmptyReload) || !strings.Contains(err.Error(), "allow_empty: true") || l.Len() != 1 {
			t.Errorf("Reload(%q) = %v, %d peers; want ErrEmptyReload and the list kept", doc, err, l.Len())
		}
	}
	if err := os.WriteFile(path, []byte("peers: []\nallow_empty: yes please\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Reload(path); err == nil || !strings.Contains(err.Error(), "line 2: allow_empty must be true or false") {
		t.Errorf("Reload(bad allow_empty) = %v", err)
	}
	if err := os.WriteFile(path, []byte("allow_empty: true\npeers: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Reload(path); err != nil || l.Len() != 0 {
		t.Errorf("Reload(allow_empty) = %v, %d peers", err, l.Len())
	}
	// Empty to empty changes nothing: no error.
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Reload(path); err != nil {
		t.Errorf("Reload(empty over empty) = %v", err)
	}
}

// Check refuses what Reload refuses over a non-empty list, so that a file
// checked before a reload does not pass where the reload then fails.
func TestCheckEmptyAsReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.yaml")
	for _, doc := range []string{"", "peers: []\n", "peers: []\nallow_empty: false\n"} {
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Check(path); !errors.Is(err, ErrEmptyReload) || !strings.Contains(err.Error(), path) {
			t.Errorf("Check(%q) = %v; want ErrEmptyReload naming the file", doc, err)
		}
	}
	if err := os.WriteFile(path, []byte("allow_empty: true\npeers: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := Check(path); err != nil || l.Len() != 0 {
		t.Errorf("Check(allow_empty) = %v", err)
	}
}

func TestParseRelay(t *testing.T) {
	ids := newIDs(t, 2)
	doc := `peers:
  - id: ` + ids[0].String() + `
    addrs: [10.1.0.2]
    relay: true
  - id: ` + ids[1].String() + `
    addrs: [10.1.0.3]
    relay: false
`
	got, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Relay || !got[0].AllowsRelayed() || got[1].Relay || got[1].AllowsRelayed() {
		t.Fatalf("Parse = %+v", got)
	}
	// The zero IP is the unknown one of a relayed connection.
	if !got[0].AllowsIP(netip.Addr{}) || got[1].AllowsIP(netip.Addr{}) {
		t.Fatal("the zero IP must be admitted exactly when relays are")
	}
	out, err := marshalEntries(got)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(back, got, Entry.equal) {
		t.Fatalf("round trip:\n%s\ngave %+v", out, back)
	}
	if _, err := Parse([]byte("peers:\n  - id: " + ids[0].String() + "\n    relay: yes\n")); err == nil ||
		!strings.Contains(err.Error(), "relay must be true or false") {
		t.Fatalf("relay: yes gave %v", err)
	}
}
