package allowlist

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestEntryAllowsIP(t *testing.T) {
	id := newID(t)
	tests := []struct {
		name  string
		addrs []string
		ip    string // "" for the zero Addr
		want  bool
	}{
		{"unbound admits IPv4", nil, "192.0.2.1", true},
		{"unbound admits IPv6", nil, "2001:db8::1", true},
		{"unbound admits zero addr", nil, "", true},
		{"host match", []string{"127.0.0.2"}, "127.0.0.2", true},
		{"host mismatch", []string{"127.0.0.2"}, "127.0.0.3", false},
		{"cidr match", []string{"10.1.0.0/16"}, "10.1.255.7", true},
		{"cidr mismatch", []string{"10.1.0.0/16"}, "10.2.0.1", false},
		{"second prefix", []string{"127.0.0.2", "10.1.0.0/16"}, "10.1.0.9", true},
		{"mapped ip, v4 prefix", []string{"10.1.0.0/16"}, "::ffff:10.1.2.3", true},
		{"mapped ip, v4 host", []string{"127.0.0.2"}, "::ffff:127.0.0.2", true},
		{"mapped ip mismatch", []string{"10.1.0.0/16"}, "::ffff:10.2.2.3", false},
		{"mapped prefix, v4 ip", []string{"::ffff:10.1.0.0/112"}, "10.1.2.3", true},
		{"mapped host, v4 ip", []string{"::ffff:127.0.0.2"}, "127.0.0.2", true},
		{"v6 match", []string{"2001:db8::/32"}, "2001:db8:1::1", true},
		{"v6 mismatch", []string{"2001:db8::/32"}, "2001:db9::1", false},
		{"v6 with zone", []string{"fe80::/10"}, "fe80::1%eth0", true},
		{"v4 not in ::/0", []string{"::/0"}, "192.0.2.1", false},
		{"v6 not in 0.0.0.0/0", []string{"0.0.0.0/0"}, "2001:db8::1", false},
		{"v4 in 0.0.0.0/0", []string{"0.0.0.0/0"}, "192.0.2.1", true},
		{"bound rejects zero addr", []string{"0.0.0.0/0"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			e := Entry{ID: id, Addrs: prefixes(t, tt.addrs...)}
			if got := e.AllowsIP(ip); got != tt.want {
				t.Errorf("AllowsIP(%v) = %v, want %v", ip, got, tt.want)
			}
			// The list must agree with the entry, through both paths.
			l := mustNew(t, e)
			if got := l.Allowed(id, ip); got != tt.want {
				t.Errorf("Allowed(%v) = %v, want %v", ip, got, tt.want)
			}
			if got := l.IPAllowed(ip); got != tt.want {
				t.Errorf("IPAllowed(%v) = %v, want %v", ip, got, tt.want)
			}
		})
	}
}

func TestEntryAllowsIPUnnormalized(t *testing.T) {
	// An Entry built by hand, never passed through the list, still treats
	// mapped addresses and zones the same way.
	e := Entry{Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	if !e.AllowsIP(netip.MustParseAddr("::ffff:10.0.0.1")) {
		t.Error("mapped address not admitted by hand-built entry")
	}
}

func TestNewValidation(t *testing.T) {
	id := newID(t)
	tests := []struct {
		name    string
		entries []Entry
		want    error
		msg     string
	}{
		{"empty id", []Entry{{}}, ErrInvalidID, "empty peer ID"},
		{"garbage id", []Entry{{ID: peer.ID("xyz")}}, ErrInvalidID, "is not a peer ID"},
		{"text id", []Entry{{ID: peer.ID(id.String())}}, ErrInvalidID, "peer.Decode"},
		{"duplicate", []Entry{{ID: id}, {ID: id, Name: "again"}}, ErrDuplicateID, id.String()},
		{"invalid prefix", []Entry{{ID: id, Addrs: []netip.Prefix{{}}}}, ErrInvalidAddr, "not a valid IP prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(tt.entries...)
			if !errors.Is(err, tt.want) {
				t.Fatalf("New: err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("New: err = %q, want it to mention %q", err, tt.msg)
			}
			if l != nil {
				t.Error("New returned a list with an error")
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	id := newID(t)
	in := Entry{ID: id, Addrs: []netip.Prefix{
		netip.MustParsePrefix("10.1.2.3/16"),         // host bits set
		netip.MustParsePrefix("::ffff:10.1.0.0/112"), // same prefix, mapped
		netip.MustParsePrefix("::ffff:127.0.0.2/128"),
	}}
	got, err := in.normalize()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("127.0.0.2/32")}
	if !slices.Equal(got.Addrs, want) {
		t.Errorf("normalize = %v, want %v", got.Addrs, want)
	}
	in.Addrs[0] = netip.MustParsePrefix("192.0.2.0/24")
	if got.Addrs[0] != want[0] {
		t.Error("normalized entry shares Addrs with its input")
	}
}

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in, want string // want "" = error
	}{
		{"127.0.0.2", "127.0.0.2/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"10.1.0.0/16", "10.1.0.0/16"},
		{"10.1.2.3/16", "10.1.0.0/16"},
		{"::ffff:10.0.0.1", "10.0.0.1/32"},
		{"fe80::1%eth0", ""},
		{"10.0.0.0/33", ""},
		{"10.0.0", ""},
		{"", ""},
		{"host.example", ""},
	}
	for _, tt := range tests {
		p, err := parsePrefix(tt.in)
		if tt.want == "" {
			if !errors.Is(err, ErrInvalidAddr) {
				t.Errorf("parsePrefix(%q) = %v, %v; want ErrInvalidAddr", tt.in, p, err)
			}
			continue
		}
		if err != nil || p.String() != tt.want {
			t.Errorf("parsePrefix(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
		}
	}
}

// A name with a control or format character (a newline, a bidi override,
// a zero-width space) or invalid UTF-8 is refused, in a file (naming the
// name's line) and through New and Add, as membership names are: printed
// beside an ID, it could make a terminal show another name, or a line the
// file does not hold. They were written and loaded.
func TestNameRefusesControlAndFormat(t *testing.T) {
	id := newID(t)
	for _, name := range []string{"op\nfake line", "op\u202eevil", "op\u200b", "op\tx", "op\x1b[2K", "op\x85"} {
		doc := "peers:\n  - id: " + id.String() + "\n    name: " + strconv.Quote(name) + "\n"
		_, err := Parse([]byte(doc))
		var pe *ParseError
		if !errors.Is(err, ErrInvalidName) || !errors.As(err, &pe) || pe.Line != 3 ||
			!strings.Contains(err.Error(), "control or format character") {
			t.Errorf("Parse of name %q: %v; want ErrInvalidName at line 3", name, err)
		}
		if _, err := New(Entry{ID: id, Name: name}); !errors.Is(err, ErrInvalidName) {
			t.Errorf("New with name %q: %v; want ErrInvalidName", name, err)
		}
		var l List
		if err := l.Add(Entry{ID: id, Name: name}); !errors.Is(err, ErrInvalidName) || l.Len() != 0 {
			t.Errorf("Add with name %q: %v (%d entries); want ErrInvalidName", name, err, l.Len())
		}
	}
	if _, err := New(Entry{ID: id, Name: "op\xff"}); !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("New with a name of invalid UTF-8: %v; want ErrInvalidName", err)
	}
	for _, name := range []string{"opérateur 2", "needs: quoting # really", "東京"} {
		if _, err := New(Entry{ID: id, Name: name}); err != nil {
			t.Errorf("New with name %q: %v", name, err)
		}
	}
}
