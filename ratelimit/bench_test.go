package ratelimit_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// benchKeys is how many keys the steady-state benchmarks cycle through:
// enough to spread over every shard, few enough to stay in cache as a
// node's set of misbehaving peers would.
const benchKeys = 1024

// peerIDs returns n distinct strings shaped like base58 secp256k1 peer IDs
// (53 characters), so hashing and map costs are realistic.
func peerIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("16Uiu2HAm%044d", i)
	}
	return ids
}

// neverExhausted returns a config whose buckets never run dry, so that a
// benchmark measures the full charging path on the real clock rather than
// the shortcut taken for banned keys.
func neverExhausted() ratelimit.Config { return ratelimit.Config{Burst: 1 << 30} }

func BenchmarkSpendPeer(b *testing.B) {
	ids := peerIDs(benchKeys)
	// Two references for reading the figures on a given machine: the
	// clock read every spend must make, and the least a design with one
	// golang.org/x/time/rate.Limiter per key would do (a locked map
	// lookup, AllowN, and TokensAt for Verdict.Remaining).
	b.Run("ref-time.Now", func(b *testing.B) {
		var sink int64
		for b.Loop() {
			sink += time.Now().UnixNano()
		}
		runtime.KeepAlive(sink)
	})
	b.Run("ref-x-time-rate", func(b *testing.B) {
		var mu sync.Mutex
		lims := make(map[string]*rate.Limiter, benchKeys)
		for _, id := range ids {
			lims[id] = rate.NewLimiter(rate.Every(time.Nanosecond), 1<<30)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			mu.Lock()
			now := time.Now()
			lim := lims[ids[i%benchKeys]]
			if lim.AllowN(now, 1) {
				_ = lim.TokensAt(now)
			}
			mu.Unlock()
		}
	})
	b.Run("charge", func(b *testing.B) {
		l := ratelimit.New(neverExhausted())
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			l.SpendPeer(ids[i%benchKeys], ratelimit.MalformedMessage)
		}
	})
	b.Run("banned", func(b *testing.B) {
		l := ratelimit.New(ratelimit.Config{Burst: 1, BanDuration: time.Hour})
		for _, id := range ids {
			l.SpendPeer(id, ratelimit.MalformedMessage)
			l.SpendPeer(id, ratelimit.MalformedMessage)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			l.SpendPeer(ids[i%benchKeys], ratelimit.MalformedMessage)
		}
	})
}

func BenchmarkSpendIP(b *testing.B) {
	for _, tc := range []struct {
		name string
		addr func(i int) netip.Addr
	}{
		{"v4", func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }},
		{"v6", func(i int) netip.Addr {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 6: byte(i >> 8), 7: byte(i), 15: 1})
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			addrs := make([]netip.Addr, benchKeys)
			for i := range addrs {
				addrs[i] = tc.addr(i)
			}
			l := ratelimit.New(neverExhausted())
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				l.SpendIP(addrs[i%benchKeys], ratelimit.FailedHandshake)
			}
		})
	}
}

// BenchmarkSpendParallel charges from every P at once, each goroutine
// walking the keys from its own offset; run it with -cpu 1,2,... to see
// how the shards scale.
func BenchmarkSpendParallel(b *testing.B) {
	ids := peerIDs(benchKeys)
	l := ratelimit.New(neverExhausted())
	var offset atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(offset.Add(benchKeys/8)) % benchKeys
		for pb.Next() {
			l.SpendPeer(ids[i%benchKeys], ratelimit.MalformedMessage)
			i++
		}
	})
}

// BenchmarkBanned measures the gater's lookups in three situations: the
// key's shard holds no ban (the lock-free fast path, the usual case), the
// shard holds bans but not this key, and the key itself is banned.
func BenchmarkBanned(b *testing.B) {
	ids := peerIDs(2 * benchKeys)
	banned, innocent := ids[:benchKeys], ids[benchKeys:]
	addrs := make([]netip.Addr, 2*benchKeys)
	for i := range addrs {
		addrs[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 6: byte(i >> 8), 7: byte(i), 15: 1})
	}
	bannedIPs, innocentIPs := addrs[:benchKeys], addrs[benchKeys:]

	clean := ratelimit.New(ratelimit.Config{})
	dirty := ratelimit.New(ratelimit.Config{Burst: 1, BanDuration: time.Hour})
	for i := range benchKeys {
		for range 2 {
			dirty.SpendPeer(banned[i], ratelimit.Unauthorized)
			dirty.SpendIP(bannedIPs[i], ratelimit.FailedHandshake)
		}
	}
	for _, tc := range []struct {
		name       string
		l          *ratelimit.Limiter
		peers      []string
		ips        []netip.Addr
		wantBanned bool
	}{
		{"no-bans", clean, banned, bannedIPs, false},
		{"others-banned", dirty, innocent, innocentIPs, false},
		{"banned", dirty, banned, bannedIPs, true},
	} {
		b.Run("peer/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if tc.l.PeerBanned(tc.peers[i%benchKeys]) != tc.wantBanned {
					b.Fatal("wrong answer")
				}
			}
		})
		b.Run("ip/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if tc.l.IPBanned(tc.ips[i%benchKeys]) != tc.wantBanned {
					b.Fatal("wrong answer")
				}
			}
		})
	}
	b.Run("peer/others-banned/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				dirty.PeerBanned(innocent[i%benchKeys])
			}
		})
	})
}

// heapMiB returns the live heap after a full collection.
func heapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// BenchmarkMillionKeys charges 1,000,000 distinct keys into a limiter with
// the default MaxKeys and reports the heap the limiter holds once its table
// is full (heap-MiB-at-cap) and after all million (heap-MiB): equal figures
// mean memory is bounded by MaxKeys, not by the number of keys seen. The
// clock is stopped so that no key is reaped and the cap alone does the work.
func BenchmarkMillionKeys(b *testing.B) {
	const n = 1_000_000
	stopped := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := ratelimit.Config{Now: func() time.Time { return stopped }}
	for _, tc := range []struct {
		name  string
		spend func(l *ratelimit.Limiter, i int)
	}{
		{"peer", func(l *ratelimit.Limiter, i int) {
			// A fresh 53-byte string per key, as a peer ID decoded
			// off the wire would be.
			var buf [53]byte
			l.SpendPeer(string(fmt.Appendf(buf[:0], "16Uiu2HAm%044d", i)), ratelimit.UnknownPeer)
		}},
		{"ip", func(l *ratelimit.Limiter, i int) {
			l.SpendIP(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), ratelimit.FailedHandshake)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var atCap, after float64
			var keys int
			for b.Loop() {
				b.StopTimer()
				base := heapMiB()
				l := ratelimit.New(cfg)
				b.StartTimer()
				for i := range n {
					if i == ratelimit.DefaultMaxKeys {
						b.StopTimer()
						atCap = heapMiB() - base
						b.StartTimer()
					}
					tc.spend(l, i)
				}
				b.StopTimer()
				after = heapMiB() - base
				st := l.Stats()
				keys = st.Peers.Keys + st.IPs.Keys
				runtime.KeepAlive(l)
				b.StartTimer()
			}
			b.ReportMetric(atCap, "heap-MiB-at-cap")
			b.ReportMetric(after, "heap-MiB")
			b.ReportMetric(float64(keys), "keys")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
		})
	}
}
