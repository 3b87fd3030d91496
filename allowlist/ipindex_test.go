package allowlist

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestIPIndexMatchesLinearScan compares the index with the obvious
// implementation on random prefixes and addresses, biased so that matches
// are common and every prefix length occurs.
func TestIPIndexMatchesLinearScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	randAddr := func(v4 bool) netip.Addr {
		if v4 {
			return netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
		}
		var b [16]byte
		b[0], b[1], b[2] = 0x20, 0x01, byte(r.IntN(4))
		for i := 3; i < 16; i++ {
			b[i] = byte(r.IntN(256))
		}
		return netip.AddrFrom16(b)
	}
	for round := range 200 {
		var ps []netip.Prefix
		for range 1 + r.IntN(20) {
			v4 := r.IntN(2) == 0
			a := randAddr(v4)
			ps = append(ps, canonicalPrefix(netip.PrefixFrom(a, r.IntN(a.BitLen()+1))))
		}
		x := newIPIndex(ps)
		for range 100 {
			ip := randAddr(r.IntN(2) == 0)
			want := false
			for _, p := range ps {
				want = want || p.Contains(ip)
			}
			if got := x.contains(ip); got != want {
				t.Fatalf("round %d: contains(%v) = %v, want %v; prefixes %v", round, ip, got, want, ps)
			}
			if ip.Is4() {
				mapped := netip.AddrFrom16(ip.As16())
				if got := x.contains(mapped); got != want {
					t.Fatalf("contains(%v) = %v, want %v as for %v", mapped, got, want, ip)
				}
			}
		}
	}
}
