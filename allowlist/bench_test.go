package allowlist

import (
	"net/netip"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// benchList returns a list of n peers, each bound to its own address, with
// every tenth bound to a /24 as well.
func benchList(b *testing.B, n int, unbound bool) (*List, []peer.ID) {
	b.Helper()
	ids := newIDs(b, n)
	entries := make([]Entry, n)
	for i, id := range ids {
		e := Entry{ID: id}
		if !unbound || i > 0 {
			ip := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
			e.Addrs = []netip.Prefix{netip.PrefixFrom(ip, 32)}
			if i%10 == 0 {
				e.Addrs = append(e.Addrs, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(i), 0}), 24))
			}
		}
		entries[i] = e
	}
	return mustNew(b, entries...), ids
}

func BenchmarkAllowed(b *testing.B) {
	l, ids := benchList(b, 1000, false)
	id, ip := ids[500], netip.AddrFrom4([4]byte{10, 1, 244, 1})
	if !l.Allowed(id, ip) {
		b.Fatal("benchmark setup: peer not allowed")
	}
	b.Run("hit", func(b *testing.B) {
		for b.Loop() {
			l.Allowed(id, ip)
		}
	})
	b.Run("wrong-ip", func(b *testing.B) {
		other := netip.MustParseAddr("192.0.2.1")
		for b.Loop() {
			l.Allowed(id, other)
		}
	})
	b.Run("unknown-peer", func(b *testing.B) {
		unknown := newID(b)
		for b.Loop() {
			l.Allowed(unknown, ip)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allowed(id, ip)
			}
		})
	})
}

func BenchmarkIPAllowed(b *testing.B) {
	bound, _ := benchList(b, 1000, false)
	unbound, _ := benchList(b, 1000, true)
	cases := []struct {
		name string
		l    *List
		ip   netip.Addr
	}{
		{"unbound-entry", unbound, netip.MustParseAddr("192.0.2.1")},
		{"bound-host", bound, netip.AddrFrom4([4]byte{10, 1, 244, 1})},
		{"bound-cidr", bound, netip.AddrFrom4([4]byte{172, 16, 50, 9})},
		{"bound-miss", bound, netip.MustParseAddr("192.0.2.1")},
		{"bound-mapped", bound, netip.MustParseAddr("::ffff:10.1.244.1")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				c.l.IPAllowed(c.ip)
			}
		})
	}
}

func BenchmarkPermits(b *testing.B) {
	ids := newIDs(b, 100)
	var rules []Route
	for i, id := range ids {
		for ch := range 10 {
			rules = append(rules, Route{FromPeer: id, FromChannel: Channel(ch), ToChannel: Channel(ch + i)})
		}
	}
	rules = append(rules,
		Route{FromPeer: ids[0], FromChannel: AnyChannel, ToChannel: AnyChannel},
		Route{FromChannel: 99, ToChannel: AnyChannel},
	)
	r, err := NewRoutes(rules...)
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name     string
		from     peer.ID
		fromCh   uint32
		toCh     uint32
		expected bool
	}{
		{"exact", ids[50], 3, 53, true},
		{"peer-wildcard", ids[0], 1234, 5678, true},
		{"any-peer", ids[50], 99, 7, true},
		{"miss", ids[50], 3, 54, false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if r.Permits(c.from, c.fromCh, c.toCh) != c.expected {
				b.Fatal("benchmark setup: unexpected result")
			}
			for b.Loop() {
				r.Permits(c.from, c.fromCh, c.toCh)
			}
		})
	}
	b.Run("nil-table", func(b *testing.B) {
		var none *Routes
		for b.Loop() {
			none.Permits(ids[0], 1, 2)
		}
	})
}
