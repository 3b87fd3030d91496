package ratelimit_test

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestIPKeying(t *testing.T) {
	tests := []struct {
		name       string
		spend      string // exhausted by two spends (burst 1)
		banned     []string
		notBanned  []string
		wantIPKeys int
	}{
		{
			name:      "IPv4 by address",
			spend:     "192.0.2.1",
			banned:    []string{"192.0.2.1", "::ffff:192.0.2.1"},
			notBanned: []string{"192.0.2.2", "2001:db8::c000:201", "::c000:201"},
		},
		{
			name:      "IPv4-mapped counts as IPv4",
			spend:     "::ffff:192.0.2.1",
			banned:    []string{"192.0.2.1", "::ffff:192.0.2.1"},
			notBanned: []string{"192.0.2.0"},
		},
		{
			name:  "IPv6 by /64",
			spend: "2001:db8:1:2:aaaa::1",
			banned: []string{
				"2001:db8:1:2::", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::1%eth0",
			},
			notBanned: []string{"2001:db8:1:3::1", "2001:db8:1::1", "192.0.2.1"},
		},
		{
			name:      "zone ignored",
			spend:     "fe80::1%eth0",
			banned:    []string{"fe80::1", "fe80::2%eth1"},
			notBanned: []string{"fe80:0:0:1::1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := testLimiter(t, ratelimit.Config{Burst: 1})
			ip := mustAddr(t, tt.spend)
			l.SpendIP(ip, ratelimit.FailedHandshake)
			if v := l.SpendIP(ip, ratelimit.FailedHandshake); !v.NewlyExhausted {
				t.Fatalf("second spend = %+v", v)
			}
			for _, s := range tt.banned {
				if !l.IPBanned(mustAddr(t, s)) {
					t.Errorf("%s not banned", s)
				}
			}
			for _, s := range tt.notBanned {
				if l.IPBanned(mustAddr(t, s)) {
					t.Errorf("%s banned", s)
				}
			}
			if got := l.Stats().IPs.Keys; got != 1 {
				t.Errorf("tracked %d IP keys, want 1", got)
			}
		})
	}
}

func TestInvalidIPIsIgnored(t *testing.T) {
	l, _ := testLimiter(t, ratelimit.Config{Burst: 1})
	for range 3 {
		if v := l.SpendIP(netip.Addr{}, ratelimit.FailedHandshake); v.Exhausted || v.Remaining != 1 {
			t.Fatalf("spend on the zero Addr = %+v", v)
		}
	}
	l.ForgiveIP(netip.Addr{})
	if l.IPBanned(netip.Addr{}) || l.Stats().IPs.Keys != 0 || l.Stats().IPs.Spent.Total() != 0 {
		t.Fatal("the zero Addr was tracked")
	}
}

func TestLRUEviction(t *testing.T) {
	// Below 64 keys a table is a single shard, so LRU order is exact.
	l, _ := testLimiter(t, ratelimit.Config{Burst: 3, MaxKeys: 4})
	for _, k := range []string{"a", "b", "c", "d"} {
		l.SpendPeer(k, ratelimit.MalformedMessage)
	}
	l.SpendPeer("a", ratelimit.MalformedMessage) // a is now the most recent, b the least
	l.SpendPeer("e", ratelimit.MalformedMessage) // evicts b
	st := l.Stats().Peers
	if st.Keys != 4 || st.Evictions != 1 {
		t.Fatalf("after 5 keys with MaxKeys 4: %+v", st)
	}
	// a kept its state; b starts afresh.
	if v := l.SpendPeer("a", ratelimit.MalformedMessage); !near(v.Remaining, 0) {
		t.Fatalf("a = %+v, want its third spend", v)
	}
	if v := l.SpendPeer("b", ratelimit.MalformedMessage); !near(v.Remaining, 2) {
		t.Fatalf("b = %+v, want a fresh bucket (it was evicted)", v)
	}
}

func TestEvictionPrefersUnbannedKeys(t *testing.T) {
	l, _ := testLimiter(t, ratelimit.Config{Burst: 1, MaxKeys: 4})
	for range 2 {
		l.SpendPeer("bad", ratelimit.Unauthorized)
	}
	// "bad" is now the least recently charged key, yet a stream of new
	// keys must evict around it.
	for i := range 100 {
		l.SpendPeer(fmt.Sprint("k", i), ratelimit.MalformedMessage)
		if !l.PeerBanned("bad") {
			t.Fatalf("banned key evicted after %d new keys", i+1)
		}
	}
	if st := l.Stats().Peers; st.Keys != 4 || st.EvictedBanned != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestEvictionWhenEveryKeyIsBanned(t *testing.T) {
	l, _ := testLimiter(t, ratelimit.Config{Burst: 1, MaxKeys: 3})
	ban := func(k string) {
		l.SpendPeer(k, ratelimit.Unauthorized)
		l.SpendPeer(k, ratelimit.Unauthorized)
	}
	ban("a")
	ban("b")
	ban("c")
	ban("d") // the shard is all bans: the oldest, a, goes
	if l.PeerBanned("a") || !l.PeerBanned("b") || !l.PeerBanned("c") || !l.PeerBanned("d") {
		t.Fatal("wrong ban evicted")
	}
	if st := l.Stats().Peers; st.Keys != 3 || st.Evictions != 1 || st.EvictedBanned != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestMemoryBoundedByMaxKeys(t *testing.T) {
	const maxKeys, n = 1000, 50_000
	l, _ := testLimiter(t, ratelimit.Config{MaxKeys: maxKeys})
	for i := range n {
		l.SpendPeer(fmt.Sprint("peer-", i), ratelimit.UnknownPeer)
		l.SpendIP(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), ratelimit.FailedHandshake)
	}
	st := l.Stats()
	for name, ts := range map[string]ratelimit.TableStats{"peers": st.Peers, "ips": st.IPs} {
		// The shards' capacities add up to exactly MaxKeys, and with a
		// stopped clock nothing is reaped, so the table is exactly full.
		if ts.Keys != maxKeys || ts.Evictions != n-maxKeys {
			t.Errorf("%s: keys %d evictions %d, want %d and %d", name, ts.Keys, ts.Evictions, maxKeys, n-maxKeys)
		}
	}
}

func TestIdleKeysAreReaped(t *testing.T) {
	// MaxKeys 127 keeps the table in one shard, so which entries the
	// inserts visit does not depend on the hash seed.
	l, clk := testLimiter(t, ratelimit.Config{Burst: 4, Refill: time.Second, BanDuration: 2 * time.Second, MaxKeys: 127})
	for i := range 100 {
		l.SpendPeer(fmt.Sprint("old-", i), ratelimit.MalformedMessage)
	}
	for range 5 {
		l.SpendPeer("banned", ratelimit.MalformedMessage)
	}
	if got := l.Stats().Peers.Keys; got != 101 {
		t.Fatalf("tracked %d keys, want 101", got)
	}
	// Long enough for every bucket to refill and the ban to lapse.
	clk.Advance(10 * time.Second)
	for i := range 60 {
		l.SpendPeer(fmt.Sprint("new-", i), ratelimit.MalformedMessage)
	}
	st := l.Stats().Peers
	if st.Keys != 60 || st.Evictions != 0 {
		t.Fatalf("after idle keys refilled: %+v, want only the 60 new keys", st)
	}
}

func TestConcurrentUse(t *testing.T) {
	const workers, spends = 8, 2000
	l := ratelimit.New(ratelimit.Config{Burst: 50, MaxKeys: 512})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range spends {
				// A shared key, a per-worker key and churn through
				// more keys than MaxKeys, mixed with reads.
				l.SpendPeer("shared", ratelimit.MalformedMessage)
				l.SpendPeer(fmt.Sprint("w", w), ratelimit.UnansweredAck)
				l.SpendIP(netip.AddrFrom4([4]byte{10, byte(w), byte(i >> 8), byte(i)}), ratelimit.FailedHandshake)
				l.PeerBanned("shared")
				l.IPBanned(netip.AddrFrom4([4]byte{10, byte(w), 0, 0}))
				if i%100 == 0 {
					l.Forgive("shared")
					l.Stats()
				}
			}
		})
	}
	wg.Wait()
	st := l.Stats()
	if got, want := st.Peers.Spent[ratelimit.MalformedMessage], uint64(workers*spends); got != want {
		t.Errorf("shared spends counted %d, want %d", got, want)
	}
	if got, want := st.Peers.Spent.Total(), uint64(2*workers*spends); got != want {
		t.Errorf("peer spends counted %d, want %d", got, want)
	}
	if got, want := st.IPs.Spent.Total(), uint64(workers*spends); got != want {
		t.Errorf("IP spends counted %d, want %d", got, want)
	}
	if st.IPs.Keys > 512 || st.Peers.Keys > workers+1 {
		t.Errorf("keys over the cap: %+v", st)
	}
	if st.Peers.Exhaustions == 0 {
		t.Error("no peer was ever exhausted: the test exercised nothing")
	}
}
