package ratelimit

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// ipKey is what the IP table is keyed by: the 16-byte form of an IPv4
// address (IPv4-mapped, as netip.Addr.As16 gives it) or of the first address
// of an IPv6 /64. The two never collide, since a /64 key's low half is zero
// and an IPv4 key's holds 0xffff. Two words hash and compare faster than a
// netip.Addr, which also carries a zone pointer.
type ipKey struct{ hi, lo uint64 }

// keyIP returns the key ip is charged under, zone dropped, and its shard
// hash; ok is false for the zero Addr.
func (l *Limiter) keyIP(ip netip.Addr) (k ipKey, h uint64, ok bool) {
	if !ip.IsValid() {
		return ipKey{}, 0, false
	}
	// In 16-byte form IPv4 and IPv4-mapped IPv6 are the same bytes, and
	// the zone is gone.
	a := ip.As16()
	k = ipKey{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}
	if !ip.Is4() && !ip.Is4In6() {
		k.lo = 0
	}
	return k, l.hashIP(k), true
}

// hashIP is a seeded hash of an IP key's two halves. A key is only 16
// bytes, so one 128-bit multiply of its keyed halves (as in wyhash) mixes it
// well enough to pick a shard, at a fraction of maphash's cost; it is on the
// path of every IPBanned.
func (l *Limiter) hashIP(k ipKey) uint64 {
	h, m := bits.Mul64(k.hi^l.ipk0, k.lo^l.ipk1)
	return h ^ m
}
