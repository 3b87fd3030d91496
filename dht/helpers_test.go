package dht

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	kad "github.com/libp2p/go-libp2p-kad-dht"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// member is one node of a test network.
type member struct {
	id   tu.Identity
	node *p2p.Node
	dht  *DHT
}

// testNet is a set of nodes on loopback that allowlist each other.
type testNet struct {
	t       testing.TB
	list    *allowlist.List
	members []*member
}

// newNet starts n nodes sharing one allowlist; node 0 is the bootstrap node
// and the others join through it. mutate adjusts each node's DHT config.
// It waits until every node is ready.
func newNet(t testing.TB, n int, mutate func(i int, c *Config)) *testNet {
	t.Helper()
	ids := make([]tu.Identity, n)
	for i := range ids {
		ids[i] = tu.NewIdentity(t)
	}
	net := &testNet{t: t, list: tu.Allowlist(t, ids...)}
	for i, id := range ids {
		var cfg Config
		if i > 0 {
			cfg.Bootstrap = []peer.AddrInfo{net.members[0].info()}
		}
		if mutate != nil {
			mutate(i, &cfg)
		}
		net.members = append(net.members, net.start(id, net.list, cfg))
	}
	net.waitReady(net.members...)
	return net
}

// start runs a node and its DHT, both closed when the test ends (DHT first).
func (net *testNet) start(id tu.Identity, list *allowlist.List, cfg Config) *member {
	net.t.Helper()
	node := tu.Node(net.t, id, list)
	d, err := New(node, cfg)
	if err != nil {
		net.t.Fatal(err)
	}
	net.t.Cleanup(func() { d.Close() })
	return &member{id: id, node: node, dht: d}
}

func (m *member) info() peer.AddrInfo {
	return peer.AddrInfo{ID: m.node.ID(), Addrs: m.node.Host().Addrs()}
}

func (net *testNet) waitReady(ms ...*member) {
	net.t.Helper()
	// Joining is CPU-bound (handshakes, identify, the first lookups): a
	// crowd joining at once on two busy cores under the race detector needs
	// more than tu.Timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 4*tu.Timeout)
	defer cancel()
	for _, m := range ms {
		if err := m.dht.WaitReady(ctx); err != nil {
			net.t.Fatalf("%s not ready: %v", m.node.ID(), err)
		}
	}
}

// parallelOps caps how many publications or lookups publishAll and findAll
// run at once, and each of those operations has a deadline of its own.
// Started all at once under one deadline, as they once were, twenty nodes'
// 400 lookups on two busy cores under the race detector made that deadline
// a measure of the machine's speed: each lookup's time was mostly its wait
// for the CPU among the others, and kad-dht drops a peer whose answer takes
// over its fixed 10 s, which a crowd of queries on a loaded machine makes
// likely. A few at a time, each operation takes about as long as it does
// alone, and its deadline bounds that.
const parallelOps = 4

// opTimeout bounds one publication or lookup in publishAll and findAll: the
// bound the DHT itself puts on one (publishTimeout, resolveTimeout). On a
// busy machine a publication waits for the slowest of the up to 20 nodes it
// stores the record on, each verifying its signature under the race
// detector: tu.Timeout was too short for some.
const opTimeout = max(publishTimeout, resolveTimeout)

// each runs fn(i) for i in [0, n), parallelOps at a time.
func each(n int, fn func(i int)) {
	sem := make(chan struct{}, parallelOps)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}

// publishAll has every member (or ms) publish, now that all have joined, so
// that each record lands on the nodes closest to its key in the full
// network rather than in the part its owner saw when it joined.
func (net *testNet) publishAll(ms ...*member) {
	net.t.Helper()
	if len(ms) == 0 {
		ms = net.members
	}
	errs := make([]error, len(ms))
	each(len(ms), func(i int) {
		// Under load a node can lose its last routing-table peer to a
		// query timeout (kad-dht drops a peer that fails to answer) and
		// must rejoin first (the DHT's rejoin loop does, from 1 s on):
		// retry while the table is empty. A sleep is the only way here:
		// kad-dht gives no event for its table filling again (Ready fires
		// once, and its RoutingTable.PeerAdded hook is kad-dht's own), so
		// this polls, 50 ms apart.
		//
		// A publication that timed out is retried at once, as the DHT's
		// own publish loop retries one. Right after the nodes are ready
		// the network is still forming: each node's first publication,
		// kad-dht's first refreshes and the dials and handshakes of a full
		// mesh of 20 nodes all run then, outside parallelOps, and on two
		// busy cores under the race detector a publication's lookup
		// (GetClosestPeers, which dials every node it has not met yet)
		// took over opTimeout. The connections it made stay, so the next
		// attempt has less to do. The deadline leaves room for three
		// attempts, two of them timing out, or for a rejoin and two.
		deadline := time.Now().Add(3 * opTimeout)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			_, errs[i] = ms[i].dht.Publish(ctx)
			cancel()
			if errs[i] == nil || time.Now().After(deadline) {
				return
			}
			switch {
			case errors.Is(errs[i], ErrNotReady):
				// A sleep is the only way to wait here: no event says
				// the table filled again (kad-dht's, above), so poll.
				time.Sleep(50 * time.Millisecond)
			case errors.Is(errs[i], context.DeadlineExceeded):
				net.t.Logf("publish %d: %v: retrying", i, errs[i])
			default:
				return
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			net.t.Fatalf("publish %d: %v", i, err)
		}
	}
}

// findAll has every reader Find every target, each lookup with a deadline
// of its own, and returns the failures.
func findAll(readers, targets []*member) []error {
	var (
		mu   sync.Mutex
		errs []error
	)
	each(len(readers)*len(targets), func(i int) {
		r, x := readers[i/len(targets)], targets[i%len(targets)]
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		rec, err := r.dht.Find(ctx, x.node.ID())
		if err == nil && (rec.Peer != x.node.ID() || !sameAddrs(rec.Addrs, x.node.Host().Addrs())) {
			err = errors.New("wrong record")
		}
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	})
	return errs
}

// eventually polls cond until it holds or tu.Timeout passes. It is for
// state kad-dht announces with no event (routing table contents, records
// spreading); every use says what it waits for.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(tu.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
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

// inTable reports whether p is in d's routing table.
func inTable(d *DHT, p peer.ID) bool { return slices.Contains(d.Peers(), p) }

func timeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	t.Cleanup(cancel)
	return ctx
}

func allowEntry(p peer.ID) allowlist.Entry { return allowlist.Entry{ID: p} }

// mallory is an allowlisted member gone bad: it runs kad-dht with a
// validator that accepts anything, so it stores and serves whatever records
// it likes, and pushes them to the nodes closest to their keys.
type mallory struct {
	id   tu.Identity
	addr ma.Multiaddr
	kad  *kad.IpfsDHT
}

type acceptAll struct{}

func (acceptAll) Validate(string, []byte) error        { return nil }
func (acceptAll) Select(string, [][]byte) (int, error) { return 0, nil }

func newMallory(t *testing.T, net *testNet) *mallory {
	t.Helper()
	id := tu.NewIdentity(t)
	if err := net.list.Add(allowEntry(id.ID)); err != nil {
		t.Fatal(err)
	}
	node := tu.Node(t, id, net.list)
	k, err := kad.New(node.Host(),
		kad.Mode(kad.ModeServer),
		kad.ProtocolPrefix(ProtocolPrefix),
		kad.Validator(record.NamespacedValidator{Namespace: acceptAll{}}),
		kad.DisableProviders(),
		kad.BootstrapPeers(net.members[0].info()),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	eventually(t, "mallory to join", func() bool { return k.RoutingTable().Size() > 0 })
	eventually(t, "mallory to be in the members' tables", func() bool {
		for _, m := range net.members {
			if !inTable(m.dht, id.ID) {
				return false
			}
		}
		return true
	})
	return &mallory{id: id, addr: node.Host().Addrs()[0], kad: k}
}

// put stores value as p's record at mallory and offers it to the nodes
// closest to the key.
func (m *mallory) put(t *testing.T, p peer.ID, value []byte) {
	t.Helper()
	if err := m.kad.PutValue(timeout(t), RecordKey(p), value); err != nil {
		t.Fatal(err)
	}
}
