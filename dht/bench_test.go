package dht

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/internal/bench"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// BenchmarkFindPeer100 runs internal/bench's DHT workload, the one
// "p2pnode bench dht" runs: 100 nodes on loopback, each joined through the
// first node and a random earlier one, all published, one unmeasured
// warm-up lookup per node. Then, b.N times, a random node looks a random
// other up twice: with kad-dht's FindPeer (after dropping any connection
// between the two, so that the lookup has to walk the network and dial)
// and with Find (the signed record). It reports the success rate (found,
// with exactly the peer's addresses) and the median, 90th and 99th
// percentile latency of each. Setting up the network takes a while; run it
// with a fixed count:
//
//	go test -run '^$' -bench FindPeer100 -benchtime 500x ./dht/
func BenchmarkFindPeer100(b *testing.B) {
	const n = 100
	setup, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	net, err := bench.NewDHTNet(setup, n, benchMember, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer net.Close()

	b.ResetTimer()
	stats, err := net.Lookups(context.Background(), b.N, 1, 10*time.Second, nil)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	for i, name := range []string{"findpeer", "find"} {
		st := stats[i]
		b.ReportMetric(st.SuccessRate(), name+"-ok-%")
		b.ReportMetric(ms(st.Percentile(50)), name+"-p50-ms")
		b.ReportMetric(ms(st.Percentile(90)), name+"-p90-ms")
		b.ReportMetric(ms(st.Percentile(99)), name+"-p99-ms")
		for _, err := range st.Failures {
			b.Logf("%s failed: %v", name, err)
		}
	}
	// A lookup that failed because a node banned loopback (concurrent dials
	// counted as failed handshakes) is the p2p layer's doing, not the DHT's:
	// say so.
	b.ReportMetric(float64(net.BanningLoopback()), "nodes-banning-loopback")
}

// benchMember joins node to the DHT for the benchmark, with kad-dht's
// FindPeer, which only this package can reach, as the first lookup.
func benchMember(node *p2p.Node, boot []peer.AddrInfo) (*bench.DHTMember, error) {
	d, err := New(node, Config{Bootstrap: boot})
	if err != nil {
		return nil, err
	}
	return &bench.DHTMember{
		WaitReady: d.WaitReady,
		Publish:   func(ctx context.Context) error { _, err := d.Publish(ctx); return err },
		Lookups: []func(context.Context, peer.ID) ([]ma.Multiaddr, error){
			func(ctx context.Context, p peer.ID) ([]ma.Multiaddr, error) {
				ai, err := d.kad.FindPeer(ctx, p)
				return ai.Addrs, err
			},
			func(ctx context.Context, p peer.ID) ([]ma.Multiaddr, error) {
				r, err := d.Find(ctx, p)
				return r.Addrs, err
			},
		},
		Close: d.Close,
	}, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
