package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// DHTMember is one node's membership in the DHT, as the workload drives it.
// The caller's DHTStart makes it, so that this package does not depend on
// the dht package: the dht package's own benchmark runs this workload with
// lookups only its internals can make (kad-dht's FindPeer).
type DHTMember struct {
	WaitReady func(context.Context) error
	Publish   func(context.Context) error
	// Lookups look a peer up in each of the ways being measured, in this
	// order, and return the addresses found.
	Lookups []func(context.Context, peer.ID) ([]ma.Multiaddr, error)
	Close   func() error
}

// DHTStart joins node to the DHT through bootstrap (none: a bootstrap
// node).
type DHTStart func(node *p2p.Node, bootstrap []peer.AddrInfo) (*DHTMember, error)

// DHTNet is a DHT network on loopback: nodes that allowlist each other, the
// first a bootstrap node.
type DHTNet struct {
	Nodes   []*p2p.Node
	Members []*DHTMember
	wg      sync.WaitGroup // the goroutines draining the nodes' events
}

// NewDHTNet starts n nodes and their DHTs, each joining through the first
// node and a random earlier one (as operators given two bootstrap addresses
// would, rather than all through one node), and waits until every one is
// ready. Then every node publishes at once, so that each record lands on
// the nodes closest to its key in the whole network rather than in the part
// its owner saw when it joined, and looks one other node up with its last
// lookup, unmeasured: right after a hundred nodes joined and published in
// the same second, the first lookups wait on peers still busy with that
// (seconds, on two cores), and operators' nodes do not all start in the
// same second. progress, if set, is told each stage ("starting", "joining",
// "publishing", "warming up") with how many nodes are done.
func NewDHTNet(ctx context.Context, n int, start DHTStart, progress func(stage string, done, total int)) (*DHTNet, error) {
	if n < 2 {
		return nil, fmt.Errorf("a DHT network needs at least 2 nodes, not %d", n)
	}
	if progress == nil {
		progress = func(string, int, int) {}
	}
	keys := make([]p2p.Config, n)
	entries := make([]allowlist.Entry, n)
	for i := range keys {
		k, err := p2p.GenerateKey(p2p.Secp256k1)
		if err != nil {
			return nil, err
		}
		id, _ := peer.IDFromPrivateKey(k)
		keys[i], entries[i] = p2p.Config{Key: k}, allowlist.Entry{ID: id}
	}
	list, err := allowlist.New(entries...)
	if err != nil {
		return nil, err
	}
	net := &DHTNet{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i, k := range keys {
		k.Allowlist = list
		node, err := p2p.New(k)
		if err != nil {
			net.Close()
			return nil, err
		}
		net.Nodes = append(net.Nodes, node)
		// Nobody reads the nodes' events here: drain them, as an
		// application would, so that their buffers never fill.
		net.wg.Go(func() {
			for range node.Receiver() {
			}
		})
		var boot []peer.AddrInfo
		if i > 0 {
			boot = append(boot, net.info(0))
		}
		if i > 1 {
			boot = append(boot, net.info(1+rng.IntN(i-1)))
		}
		m, err := start(node, boot)
		if err != nil {
			net.Close()
			return nil, err
		}
		net.Members = append(net.Members, m)
		progress("starting", i+1, n)
	}
	for i, m := range net.Members {
		if err := m.WaitReady(ctx); err != nil {
			net.Close()
			return nil, fmt.Errorf("node %d not ready: %w", i, err)
		}
		progress("joining", i+1, n)
	}
	if err := net.all(ctx, "publishing", progress, func(i int, m *DHTMember) error { return m.Publish(ctx) }); err != nil {
		net.Close()
		return nil, err
	}
	// Warm-up lookups may fail; the measured ones say how well lookups do.
	targets := make([]peer.ID, n)
	for i := range targets {
		targets[i] = net.Nodes[(i+1+rng.IntN(n-1))%n].ID()
	}
	_ = net.all(ctx, "warming up", progress, func(i int, m *DHTMember) error {
		if len(m.Lookups) == 0 {
			return nil
		}
		_, err := m.Lookups[len(m.Lookups)-1](ctx, targets[i])
		return err
	})
	return net, nil
}

// info is node i's identity and addresses.
func (net *DHTNet) info(i int) peer.AddrInfo {
	return peer.AddrInfo{ID: net.Nodes[i].ID(), Addrs: net.Nodes[i].Host().Addrs()}
}

// all runs f for every member at once and returns the first error.
func (net *DHTNet) all(ctx context.Context, stage string, progress func(string, int, int), f func(int, *DHTMember) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int
	)
	errs := make([]error, len(net.Members))
	for i, m := range net.Members {
		wg.Go(func() {
			errs[i] = f(i, m)
			mu.Lock()
			done++
			progress(stage, done, len(net.Members))
			mu.Unlock()
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("node %d: %s: %w", i, stage, err)
		}
	}
	return nil
}

// Close stops every DHT, then every node.
func (net *DHTNet) Close() {
	for _, m := range net.Members {
		_ = m.Close()
	}
	for _, n := range net.Nodes {
		_ = n.Close()
	}
	net.wg.Wait()
}

// LookupStats sums up one kind of lookup.
type LookupStats struct {
	Lookups int
	OK      int // found, with exactly the peer's addresses
	// Latencies holds every lookup's time, successful or not.
	Latencies []time.Duration
	// Failures says why each lookup that did not find the peer failed.
	Failures []error
}

// SuccessRate is the share of lookups that found the peer, in percent.
func (s LookupStats) SuccessRate() float64 {
	if s.Lookups == 0 {
		return 0
	}
	return 100 * float64(s.OK) / float64(s.Lookups)
}

// Percentile is the p-th percentile of the latencies (nearest rank).
func (s LookupStats) Percentile(p int) time.Duration {
	if len(s.Latencies) == 0 {
		return 0
	}
	l := slices.Clone(s.Latencies)
	slices.Sort(l)
	i := (len(l)*p + 99) / 100
	return l[max(i-1, 0)]
}

// Lookups has count random nodes each look a random other node up by its
// peer ID in every way the members offer, in order, after closing any
// connection between the two, so that the first lookup cannot be answered
// from a live connection. Each lookup gets perLookup. The pairs come from
// seed, so two runs ask the same questions. It returns one LookupStats per
// way; progress, if set, is told the lookups done.
func (net *DHTNet) Lookups(ctx context.Context, count int, seed uint64, perLookup time.Duration, progress func(done int)) ([]LookupStats, error) {
	kinds := len(net.Members[0].Lookups)
	stats := make([]LookupStats, kinds)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	n := len(net.Nodes)
	for k := range count {
		i := rng.IntN(n)
		j := (i + 1 + rng.IntN(n-1)) % n
		from, to := net.Nodes[i], net.Nodes[j]
		_ = from.Host().Network().ClosePeer(to.ID())
		for kind, lookup := range net.Members[i].Lookups {
			lctx, cancel := context.WithTimeout(ctx, perLookup)
			start := time.Now()
			addrs, err := lookup(lctx, to.ID())
			st := &stats[kind]
			st.Latencies = append(st.Latencies, time.Since(start))
			cancel()
			st.Lookups++
			if err == nil && sameAddrs(addrs, to.Host().Addrs()) {
				st.OK++
			} else {
				if err == nil {
					err = fmt.Errorf("found %v, the peer listens on %v", addrs, to.Host().Addrs())
				}
				st.Failures = append(st.Failures, err)
			}
		}
		if ctx.Err() != nil {
			return stats, ctx.Err()
		}
		if progress != nil {
			progress(k + 1)
		}
	}
	return stats, nil
}

// BanningLoopback counts the nodes whose rate limiter banned 127.0.0.1: a
// lookup that failed because of it is the p2p layer's doing (many
// concurrent dials counted as failed handshakes), not the DHT's.
func (net *DHTNet) BanningLoopback() int {
	banned := 0
	for _, n := range net.Nodes {
		if n.Limiter().IPBanned(netip.MustParseAddr("127.0.0.1")) {
			banned++
		}
	}
	return banned
}

// sameAddrs reports whether a and b hold the same addresses, in any order.
func sameAddrs(a, b []ma.Multiaddr) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.ContainsFunc(b, x.Equal) {
			return false
		}
	}
	return true
}
