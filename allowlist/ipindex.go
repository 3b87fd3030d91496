package allowlist

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// ipIndex answers "does any of these prefixes contain ip?" with one map
// lookup per distinct prefix length instead of one comparison per prefix.
// The gater asks before the handshake on every inbound connection, so a
// long list of bound peers must not make that linear.
type ipIndex struct {
	// groups are ordered longest prefix first: single addresses are the
	// common binding and are found on the first lookup.
	groups []prefixGroup
}

// prefixGroup holds the prefixes of one family and length, keyed by their
// masked address as plain integers or bytes, which hash faster than
// netip.Prefix.
type prefixGroup struct {
	is4  bool
	bits int
	v4   map[uint32]struct{}
	v6   map[[16]byte]struct{}
}

// newIPIndex indexes canonical (masked, unmapped) prefixes.
func newIPIndex(prefixes []netip.Prefix) ipIndex {
	type key struct {
		is4  bool
		bits int
	}
	byKey := make(map[key]*prefixGroup)
	for _, p := range prefixes {
		k := key{p.Addr().Is4(), p.Bits()}
		g := byKey[k]
		if g == nil {
			g = &prefixGroup{is4: k.is4, bits: k.bits}
			if g.is4 {
				g.v4 = make(map[uint32]struct{})
			} else {
				g.v6 = make(map[[16]byte]struct{})
			}
			byKey[k] = g
		}
		if g.is4 {
			g.v4[mask4(p.Addr(), g.bits)] = struct{}{}
		} else {
			g.v6[mask6(p.Addr(), g.bits)] = struct{}{}
		}
	}
	groups := make([]prefixGroup, 0, len(byKey))
	for _, g := range byKey {
		groups = append(groups, *g)
	}
	slices.SortFunc(groups, func(a, b prefixGroup) int {
		if c := cmp.Compare(b.bits, a.bits); c != 0 {
			return c
		}
		if a.is4 == b.is4 {
			return 0
		}
		if a.is4 {
			return -1
		}
		return 1
	})
	return ipIndex{groups: groups}
}

// contains reports whether some indexed prefix contains ip.
func (x *ipIndex) contains(ip netip.Addr) bool {
	if !ip.IsValid() || len(x.groups) == 0 {
		return false
	}
	ip = canonicalAddr(ip)
	if ip.Is4() {
		for i := range x.groups {
			if g := &x.groups[i]; g.is4 {
				if _, ok := g.v4[mask4(ip, g.bits)]; ok {
					return true
				}
			}
		}
		return false
	}
	for i := range x.groups {
		if g := &x.groups[i]; !g.is4 {
			if _, ok := g.v6[mask6(ip, g.bits)]; ok {
				return true
			}
		}
	}
	return false
}

// mask4 returns the first bits bits of the IPv4 address a.
func mask4(a netip.Addr, bits int) uint32 {
	b := a.As4()
	v := binary.BigEndian.Uint32(b[:])
	if bits <= 0 {
		return 0
	}
	return v &^ (1<<(32-bits) - 1)
}

// mask6 returns the IPv6 address a with all but its first bits bits cleared.
func mask6(a netip.Addr, bits int) [16]byte {
	b := a.As16()
	for i := range b {
		switch {
		case bits >= 8:
			bits -= 8
		case bits > 0:
			b[i] &= ^byte(0xff >> bits)
			bits = 0
		default:
			b[i] = 0
		}
	}
	return b
}
