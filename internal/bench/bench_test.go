package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/bitvmx/go-bitvmx-p2p/dht"
	"github.com/bitvmx/go-bitvmx-p2p/internal/bench"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The exchange workloads run, against their baselines, and stop every
// goroutine they started.
func TestExchangeWorkloads(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, setup := range map[string]func(context.Context, int) (*bench.Workload, error){
		"kept": bench.ExchangeKeptConn, "dial": bench.ExchangeDialDisconnect,
	} {
		w, err := setup(ctx, 64)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ours, base, err := bench.Interleave(4, 2, w.Ours, w.Base)
		w.Close()
		if err != nil || ours <= 0 || base <= 0 {
			t.Fatalf("%s: %v, %v, %v", name, ours, base, err)
		}
	}
}

// A small DHT network forms, and every lookup finds its peer.
func TestDHTNet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stages := map[string]int{}
	net, err := bench.NewDHTNet(ctx, 5, startDHT, func(stage string, done, total int) {
		if total != 5 || done < 1 || done > total {
			t.Errorf("progress %s %d/%d", stage, done, total)
		}
		stages[stage] = done
	})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	if stages["starting"] != 5 || stages["joining"] != 5 || stages["publishing"] != 5 || stages["warming up"] != 5 {
		t.Fatalf("stages %v", stages)
	}
	stats, err := net.Lookups(ctx, 10, 1, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stats {
		if st.Lookups != 10 || st.OK != 10 || st.SuccessRate() != 100 || st.Percentile(50) <= 0 || len(st.Latencies) != 10 {
			t.Fatalf("stats %+v", st)
		}
	}
	if len(stats) != 2 {
		t.Fatalf("%d kinds of lookup", len(stats))
	}
}

// startDHT measures two ways of finding a peer: Find, and Resolve with an
// empty cache.
func startDHT(node *p2p.Node, boot []peer.AddrInfo) (*bench.DHTMember, error) {
	d, err := dht.New(node, dht.Config{Bootstrap: boot})
	if err != nil {
		return nil, err
	}
	return &bench.DHTMember{
		WaitReady: d.WaitReady,
		Publish:   func(ctx context.Context) error { _, err := d.Publish(ctx); return err },
		Lookups: []func(context.Context, peer.ID) ([]ma.Multiaddr, error){
			func(ctx context.Context, p peer.ID) ([]ma.Multiaddr, error) {
				r, err := d.Find(ctx, p)
				return r.Addrs, err
			},
			func(ctx context.Context, p peer.ID) ([]ma.Multiaddr, error) {
				d.Invalidate(p)
				return d.Resolve(ctx, p)
			},
		},
		Close: d.Close,
	}, nil
}
