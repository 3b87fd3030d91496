package dht

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// BenchmarkFindPeer100 runs 100 nodes on loopback, each joined through two
// bootstrap peers and published, and, b.N times, has a
// random node look a random other up twice: with kad-dht's FindPeer (after
// dropping any connection between the two, so that the lookup has to walk
// the network and dial) and with Find (the signed record). It reports the
// success rate and the median, 90th and 99th percentile latency of each. Setting
// up the network takes a while; run it with a fixed count:
//
//	go test -run '^$' -bench FindPeer100 -benchtime 500x ./dht/
func BenchmarkFindPeer100(b *testing.B) {
	const n = 100
	rng := rand.New(rand.NewPCG(1, 2))
	// Each node joins through the first node and a random earlier one, as
	// operators given two bootstrap addresses would, rather than all through
	// one node.
	ids := make([]tu.Identity, n)
	for i := range ids {
		ids[i] = tu.NewIdentity(b)
	}
	net := &testNet{t: b, list: tu.Allowlist(b, ids...)}
	for i, id := range ids {
		var cfg Config
		if i > 0 {
			cfg.Bootstrap = []peer.AddrInfo{net.members[0].info()}
		}
		if i > 1 {
			cfg.Bootstrap = append(cfg.Bootstrap, net.members[1+rng.IntN(i-1)].info())
		}
		net.members = append(net.members, net.start(id, net.list, cfg))
	}
	net.waitReady(net.members...)
	setup, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	net.publishAllCtx(setup)

	// Warm up: every node looks one other up, unmeasured. Right after a
	// hundred nodes joined and published at once, the first lookups wait
	// on peers still busy with that (seconds, on two cores); operators'
	// nodes do not all start in the same second.
	var wg sync.WaitGroup
	for i, m := range net.members {
		x := net.members[(i+1+rng.IntN(n-1))%n].node.ID()
		wg.Go(func() { m.dht.Find(setup, x) })
	}
	wg.Wait()

	var findPeer, find []time.Duration
	var findPeerOK, findOK int
	var failures []error
	b.ResetTimer()
	for range b.N {
		i := rng.IntN(n)
		j := (i + 1 + rng.IntN(n-1)) % n
		a, x := net.members[i], net.members[j]

		b.StopTimer()
		a.node.Host().Network().ClosePeer(x.node.ID())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		b.StartTimer()

		start := time.Now()
		ai, err := a.dht.kad.FindPeer(ctx, x.node.ID())
		findPeer = append(findPeer, time.Since(start))
		if err == nil && len(ai.Addrs) > 0 {
			findPeerOK++
		}

		start = time.Now()
		r, err := a.dht.Find(ctx, x.node.ID())
		find = append(find, time.Since(start))
		switch {
		case err != nil:
			failures = append(failures, err)
		case !sameAddrs(r.Addrs, x.node.Host().Addrs()):
			failures = append(failures, fmt.Errorf("wrong addresses %v", r.Addrs))
		default:
			findOK++
		}
		cancel()
	}
	b.StopTimer()

	b.ReportMetric(100*float64(findPeerOK)/float64(b.N), "findpeer-ok-%")
	b.ReportMetric(ms(percentile(findPeer, 50)), "findpeer-p50-ms")
	b.ReportMetric(ms(percentile(findPeer, 90)), "findpeer-p90-ms")
	b.ReportMetric(ms(percentile(findPeer, 99)), "findpeer-p99-ms")
	b.ReportMetric(100*float64(findOK)/float64(b.N), "find-ok-%")
	b.ReportMetric(ms(percentile(find, 50)), "find-p50-ms")
	b.ReportMetric(ms(percentile(find, 90)), "find-p90-ms")
	b.ReportMetric(ms(percentile(find, 99)), "find-p99-ms")
	// A lookup that failed because a node banned loopback (concurrent dials
	// counted as failed handshakes) is the p2p layer's doing, not the DHT's:
	// say so.
	banned := 0
	for _, m := range net.members {
		if m.node.Limiter().IPBanned(netip.MustParseAddr("127.0.0.1")) {
			banned++
		}
	}
	b.ReportMetric(float64(banned), "nodes-banning-loopback")
	for _, err := range failures {
		b.Logf("find failed: %v", err)
	}
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
