package ratelimit

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// checkTable verifies the bookkeeping that the public API cannot see: every
// entry is in the map and on exactly the list its ban state says, the
// counters match, and no shard exceeds its share of MaxKeys.
func checkTable[K comparable](t *testing.T, tb *table[K], maxKeys int) {
	t.Helper()
	total := 0
	for i := range tb.shards {
		s := &tb.shards[i]
		total += s.capacity
		seen := 0
		walk := func(l *list[K], banned bool) int {
			n := 0
			var prev *entry[K]
			for e := l.front; e != nil; e = e.next {
				if e.prev != prev {
					t.Fatalf("shard %d: broken back link", i)
				}
				if banned != e.banned {
					t.Fatalf("shard %d: entry %v on the wrong list", i, e.key)
				}
				if banned && prev != nil && prev.until > e.until {
					t.Fatalf("shard %d: banned list out of order at %v", i, e.key)
				}
				if s.entries[e.key] != e {
					t.Fatalf("shard %d: listed entry %v not in the map", i, e.key)
				}
				prev = e
				n++
			}
			if l.back != prev {
				t.Fatalf("shard %d: back is not the last entry", i)
			}
			return n
		}
		nb := walk(&s.banned, true)
		seen = walk(&s.active, false) + nb
		if seen != len(s.entries) || int64(seen) != s.keys.Load() || int32(nb) != s.nbanned.Load() {
			t.Fatalf("shard %d: listed %d (banned %d), map %d, keys %d, nbanned %d",
				i, seen, nb, len(s.entries), s.keys.Load(), s.nbanned.Load())
		}
		if seen > s.capacity {
			t.Fatalf("shard %d: %d entries over capacity %d", i, seen, s.capacity)
		}
	}
	if total != maxKeys {
		t.Fatalf("shard capacities add up to %d, want %d", total, maxKeys)
	}
}

func TestShardingSplitsMaxKeysExactly(t *testing.T) {
	for _, m := range []int{1, 2, 63, 64, 127, 128, 1000, 1023, 1024, 1025, 65536, 100_003} {
		tb := newTable[string](&policy{}, m)
		want := 16
		for want > 1 && m/want < minShardKeys {
			want /= 2
		}
		if len(tb.shards) != want {
			t.Errorf("MaxKeys %d: %d shards, want %d", m, len(tb.shards), want)
		}
		checkTable(t, &tb, m)
	}
}

// TestRandomOperationsKeepInvariants drives a limiter with random spends,
// forgives and clock steps, checking the bookkeeping after each step.
func TestRandomOperationsKeepInvariants(t *testing.T) {
	// A Refill longer than BanDuration makes bans end out of the order
	// they began.
	for _, refill := range []time.Duration{time.Second, 7 * time.Second} {
		for _, maxKeys := range []int{5, 200, 2000} {
			randomOperations(t, refill, maxKeys)
		}
	}
}

func randomOperations(t *testing.T, refill time.Duration, maxKeys int) {
	t.Run(fmt.Sprint("Refill=", refill, "/MaxKeys=", maxKeys), func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, uint64(maxKeys)))
		now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		l := New(Config{
			Burst: 3, Refill: refill, BanDuration: 5 * time.Second, MaxKeys: maxKeys,
			Now: func() time.Time { return now },
		})
		keys := 3 * maxKeys
		for step := range 20_000 {
			k := rng.IntN(keys)
			ip := netip.AddrFrom4([4]byte{10, 0, byte(k >> 8), byte(k)})
			switch op := rng.IntN(100); {
			case op < 45:
				l.SpendPeer(fmt.Sprint(k), Reason(rng.IntN(10)))
			case op < 90:
				l.SpendIP(ip, FailedHandshake)
			case op < 93:
				l.Forgive(fmt.Sprint(k))
			case op < 96:
				l.ForgiveIP(ip)
			default:
				now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
			}
			if step%97 == 0 {
				checkTable(t, &l.peers, maxKeys)
				checkTable(t, &l.ips, maxKeys)
			}
		}
		checkTable(t, &l.peers, maxKeys)
		checkTable(t, &l.ips, maxKeys)
	})
}
