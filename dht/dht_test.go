package dht

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

func TestEveryNodeFindsEveryOther(t *testing.T) {
	// Each node publishes when it joins, and once more below when all have;
	// the quick republications of a forming network are left out, to spare
	// two cores under the race detector (TestRecordsPublishedWithoutHelp
	// covers them).
	net := newNet(t, 20, func(_ int, c *Config) { c.FirstRefresh = 10 * time.Minute })
	net.publishAll()
	if errs := findAll(net.members, net.members); len(errs) > 0 {
		t.Fatalf("%d of %d lookups failed, first: %v", len(errs), 20*20, errs[0])
	}
	ctx := timeout(t)
	// Resolve gives the same addresses, and the peerstore has them.
	a, b := net.members[3], net.members[17]
	addrs, err := a.dht.Resolve(ctx, b.node.ID())
	if err != nil || !sameAddrs(addrs, b.node.Host().Addrs()) {
		t.Fatalf("resolve: %v %v", addrs, err)
	}
	if ps := a.node.Host().Peerstore().Addrs(b.node.ID()); !slices.ContainsFunc(ps, addrs[0].Equal) {
		t.Fatalf("peerstore lacks %s: %v", addrs[0], ps)
	}
}

func TestRecordsPublishedWithoutHelp(t *testing.T) {
	// No explicit Publish: each node publishes when ready and republishes
	// as the peers closest to its key settle.
	net := newNet(t, 8, nil)
	eventually(t, "every node to find every other", func() bool {
		return len(findAll(net.members, net.members)) == 0
	})
}

func TestAddressChangePropagates(t *testing.T) {
	net := newNet(t, 5, nil)
	net.publishAll()
	x, reader := net.members[2], net.members[0]
	ctx := timeout(t)
	old, err := reader.dht.Resolve(ctx, x.node.ID())
	if err != nil || !sameAddrs(old, x.node.Host().Addrs()) {
		t.Fatalf("resolve: %v %v", old, err)
	}

	// x moves to another port, without restarting.
	swarm := x.node.Host().Network()
	if err := swarm.Listen(ma.StringCast("/ip4/127.0.0.1/tcp/0")); err != nil {
		t.Fatal(err)
	}
	swarm.(interface{ ListenClose(...ma.Multiaddr) }).ListenClose(old...)
	var moved []ma.Multiaddr
	eventually(t, "the host to drop its old address", func() bool {
		moved = x.node.Host().Addrs()
		return len(moved) == 1 && !moved[0].Equal(old[0])
	})

	// The reader still has the old address cached...
	if got, _ := reader.dht.Resolve(ctx, x.node.ID()); !sameAddrs(got, old) {
		t.Fatalf("cache not used: %v", got)
	}
	// ...until the caller reports it failed; x republished on its own when
	// its addresses changed.
	eventually(t, "the new address to be found", func() bool {
		reader.dht.Invalidate(x.node.ID())
		got, err := reader.dht.Resolve(ctx, x.node.ID())
		return err == nil && sameAddrs(got, moved)
	})
}

func TestTwoBootstrapNodesOneDown(t *testing.T) {
	ids := make([]tu.Identity, 8)
	for i := range ids {
		ids[i] = tu.NewIdentity(t)
	}
	net := &testNet{t: t, list: tu.Allowlist(t, ids...)}
	up := net.start(ids[0], net.list, Config{})
	down := net.start(ids[1], net.list, Config{})
	bootstrap := []peer.AddrInfo{down.info(), up.info()}
	down.dht.Close()
	down.node.Close()

	net.members = append(net.members, up)
	for _, id := range ids[2:] {
		net.members = append(net.members, net.start(id, net.list, Config{Bootstrap: bootstrap}))
	}
	net.waitReady(net.members...)
	net.publishAll()
	if errs := findAll(net.members, net.members); len(errs) > 0 {
		t.Fatalf("%d lookups failed, first: %v", len(errs), errs[0])
	}
}

// A Publish waits for the publication under way (the DHT's own, say,
// which may take the network's 30 seconds) only as long as its context
// allows.
func TestPublishWaitsOnlyAsLongAsItsContext(t *testing.T) {
	a := tu.NewIdentity(t)
	net := &testNet{t: t, list: tu.Allowlist(t, a)}
	m := net.start(a, net.list, Config{})
	m.dht.pub.turn <- struct{}{} // a publication under way
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() {
		_, err := m.dht.Publish(ctx)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("publish while another holds the turn: %v, want its context's error", err)
		}
	case <-time.After(tu.Timeout):
		t.Fatal("publish with a cancelled context still waiting for the publication under way")
	}
	<-m.dht.pub.turn
	if _, err := m.dht.Publish(timeout(t)); !errors.Is(err, ErrNotReady) {
		t.Fatalf("publish once the turn is free: %v, want ErrNotReady (a lone node)", err)
	}
}

func TestReady(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	net := &testNet{t: t, list: tu.Allowlist(t, a, b)}
	boot := net.start(a, net.list, Config{})

	// A bootstrap node is ready only once someone joins.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := boot.dht.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lone bootstrap node ready: %v", err)
	}
	if _, err := boot.dht.Find(timeout(t), b.ID); !errors.Is(err, ErrNotReady) {
		t.Fatalf("find before ready: %v", err)
	}
	if _, err := boot.dht.Publish(timeout(t)); !errors.Is(err, ErrNotReady) {
		t.Fatalf("publish before ready: %v", err)
	}

	joiner := net.start(b, net.list, Config{Bootstrap: []peer.AddrInfo{boot.info()}})
	net.waitReady(joiner, boot)
	select {
	case <-boot.dht.Ready():
	default:
		t.Fatal("Ready not closed")
	}
}

func TestClose(t *testing.T) {
	net := newNet(t, 2, nil)
	m, other := net.members[1], net.members[0]
	if err := m.dht.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.dht.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	ctx := timeout(t)
	if _, err := m.dht.Find(ctx, other.node.ID()); !errors.Is(err, ErrClosed) {
		t.Fatalf("find: %v", err)
	}
	if _, err := m.dht.Resolve(ctx, other.node.ID()); !errors.Is(err, ErrClosed) {
		t.Fatalf("resolve: %v", err)
	}
	if _, err := m.dht.Publish(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish: %v", err)
	}
	if slices.Contains(m.node.Host().Mux().Protocols(), ProtocolID) {
		t.Fatal("closed DHT still serves its protocol")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	a, stranger := tu.NewIdentity(t), tu.NewIdentity(t)
	node := tu.Node(t, a, tu.Allowlist(t, a))
	if _, err := New(node, Config{Bootstrap: []peer.AddrInfo{{ID: stranger.ID}}}); !errors.Is(err, ErrNoBootstrap) {
		t.Fatalf("bootstrap not allowlisted: %v", err)
	}
	if _, err := New(node, Config{RecordTTL: time.Minute, Refresh: time.Minute}); err == nil {
		t.Fatal("Refresh >= RecordTTL accepted")
	}
	if _, err := New(node, Config{RecordTTL: MaxRecordLifetime + 1}); err == nil {
		t.Fatal("RecordTTL beyond MaxRecordLifetime accepted")
	}
	if _, err := New(nil, Config{}); err == nil {
		t.Fatal("nil node accepted")
	}
}
