package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/pflag"

	"github.com/bitvmx/go-bitvmx-p2p/dht"
	"github.com/bitvmx/go-bitvmx-p2p/internal/bench"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

const dhtBenchLong = `bench dht starts a DHT network in this process on 127.0.0.1 (--nodes
nodes, the first a bootstrap node, every one publishing its signed record),
lets every node look one other up (a warm-up), then has random nodes look
random others up by peer ID (--lookups, or --count), each after closing
any connection between the two so that the lookup walks the network. It prints the success rate (found, with exactly
the peer's addresses) and the latency percentiles. Targets: 100 % and a
median of 50 ms or less.

Setting 100 nodes up takes a while on a small machine: every node joins,
then publishes. There is no bare baseline: go-libp2p has no DHT of its own.`

// dhtBenchOptions are the flags of "bench dht".
type dhtBenchOptions struct {
	nodes, lookups int
	timeout        time.Duration
}

func bindDHTBenchFlags(fs *pflag.FlagSet, o *dhtBenchOptions) {
	fs.IntVar(&o.nodes, "nodes", o.nodes, "DHT nodes to run (2 to 500)")
	fs.IntVar(&o.lookups, "lookups", o.lookups, "lookups to make (--count does the same)")
	fs.DurationVar(&o.timeout, "setup-timeout", o.timeout, "give up when the network is not formed within this long")
}

func (o *dhtBenchOptions) validate() error {
	switch {
	case o.nodes < 2 || o.nodes > 500:
		return usageErrorf("--nodes must be between 2 and 500 (got %d)", o.nodes)
	case o.lookups < 1:
		return usageErrorf("--lookups must be positive (got %d)", o.lookups)
	case o.timeout <= 0:
		return usageErrorf("--setup-timeout must be positive (got %s)", o.timeout)
	}
	return nil
}

// dhtBenchResult is what "bench dht" prints.
type dhtBenchResult struct {
	Nodes          int     `json:"nodes"`
	SetupMS        float64 `json:"setup_ms"`
	Lookups        int     `json:"lookups"`
	OK             int     `json:"ok"`
	SuccessPercent float64 `json:"success_percent"`
	P50MS          float64 `json:"p50_ms"`
	P90MS          float64 `json:"p90_ms"`
	P99MS          float64 `json:"p99_ms"`
	BanningLoop    int     `json:"nodes_banning_loopback"`
}

// perLookupTimeout bounds one lookup of the DHT benchmark.
const perLookupTimeout = 10 * time.Second

func runDHTBench(a *app, o benchOptions) error {
	log, err := newLogger(a.log, a.err)
	if err != nil {
		return err
	}
	routeLibp2pLogs(log)
	lookups := o.dhtOpts.lookups
	if o.count > 0 {
		lookups = o.count
	}
	prog := newProgress(a.err)
	defer prog.done()
	ctx, cancel := context.WithTimeout(context.Background(), o.dhtOpts.timeout)
	defer cancel()
	start := time.Now()
	net, err := bench.NewDHTNet(ctx, o.dhtOpts.nodes, benchDHTMember, func(stage string, done, total int) {
		prog.set("bench dht: "+stage, fmt.Sprintf("%d/%d nodes", done, total))
	})
	if err != nil {
		return fmt.Errorf("bench dht: setting up %d nodes: %w", o.dhtOpts.nodes, err)
	}
	defer net.Close()
	setup := time.Since(start)
	stats, err := net.Lookups(context.Background(), lookups, 1, perLookupTimeout, func(done int) {
		prog.set("bench dht: lookups", fmt.Sprintf("%d/%d", done, lookups))
	})
	if err != nil {
		return fmt.Errorf("bench dht: %w", err)
	}
	st := stats[0]
	prog.done()
	r := dhtBenchResult{Nodes: o.dhtOpts.nodes, SetupMS: millis(setup), Lookups: st.Lookups, OK: st.OK,
		SuccessPercent: st.SuccessRate(), P50MS: millis(st.Percentile(50)), P90MS: millis(st.Percentile(90)),
		P99MS: millis(st.Percentile(99)), BanningLoop: net.BanningLoopback()}
	if o.asJSON {
		return json.NewEncoder(a.out).Encode(r)
	}
	fmt.Fprintf(a.out, "p2pnode bench dht: %d nodes on 127.0.0.1, formed, published and warmed up in %s\n", r.Nodes, setup.Round(time.Millisecond))
	fmt.Fprintf(a.out, "lookups by peer ID (signed record): %d, found %d (%.1f %%), latency p50 %.1f ms, p90 %.1f ms, p99 %.1f ms\n",
		r.Lookups, r.OK, r.SuccessPercent, r.P50MS, r.P90MS, r.P99MS)
	verdict := "met"
	if r.SuccessPercent < 100 || r.P50MS > 50 {
		verdict = "BELOW"
	}
	fmt.Fprintf(a.out, "target: 100 %% found, median <= 50 ms: %s\n", verdict)
	if r.BanningLoop > 0 {
		fmt.Fprintf(a.out, "note: %d nodes banned 127.0.0.1 (concurrent dials counted as failed handshakes): failures there are the p2p layer's\n", r.BanningLoop)
	}
	return nil
}

// benchDHTMember joins node to the DHT for "bench dht", which measures Find:
// the lookup of a peer's signed record by its ID, which Resolve (the
// handler's way to an address) makes. kad-dht's own FindPeer is measured by
// the dht package's benchmark, which can reach it.
func benchDHTMember(node *p2p.Node, boot []peer.AddrInfo) (*bench.DHTMember, error) {
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
		},
		Close: d.Close,
	}, nil
}
