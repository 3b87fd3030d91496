package dht

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func TestResolveCache(t *testing.T) {
	p := peer.ID("p")
	now := time.Unix(1_800_000_000, 0)
	a := []ma.Multiaddr{testAddr}
	rc := newResolveCache()

	c, start := rc.join(p)
	if !start {
		t.Fatal("first join must start a lookup")
	}
	if c2, start2 := rc.join(p); c2 != c || start2 {
		t.Fatal("second join must share the lookup")
	}
	c.until = now.Add(time.Minute)
	rc.finish(p, c, a, nil)
	<-c.done
	if got, ok := rc.get(p, now); !ok || !sameAddrs(got, a) {
		t.Fatalf("not cached: %v", got)
	}
	if _, ok := rc.get(p, now.Add(time.Minute)); ok {
		t.Fatal("cached past its deadline")
	}

	// Forgetting while a lookup runs: its callers get the result, the
	// cache does not keep it, and the next caller starts afresh.
	c, _ = rc.join(p)
	rc.forget(p)
	if c2, start := rc.join(p); c2 == c || !start {
		t.Fatal("join after forget must start a new lookup")
	}
	c.until = now.Add(time.Minute)
	rc.finish(p, c, a, nil)
	if c.err != nil || !sameAddrs(c.addrs, a) {
		t.Fatal("forgotten lookup lost its result")
	}
	if _, ok := rc.get(p, now); ok {
		t.Fatal("forgotten lookup was cached")
	}

	// Failures are not cached.
	c, _ = rc.join(peer.ID("q"))
	rc.finish(peer.ID("q"), c, nil, ErrNotFound)
	if _, ok := rc.get(peer.ID("q"), now); ok {
		t.Fatal("failure cached")
	}
}

func TestResolveFallsBackToFindPeer(t *testing.T) {
	net := newNet(t, 4, func(i int, c *Config) { c.NoFindPeerFallback = i == 3 })
	// A member running a bare kad-dht never publishes a record.
	bare := newMallory(t, net)
	net.publishAll()

	addrs, err := net.members[1].dht.Resolve(timeout(t), bare.id.ID)
	if err != nil || len(addrs) != 1 || !addrs[0].Equal(bare.addr) {
		t.Fatalf("fallback: %v %v", addrs, err)
	}
	if _, err := net.members[3].dht.Resolve(timeout(t), bare.id.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("without fallback: %v", err)
	}
}

func TestResolveConcurrent(t *testing.T) {
	net := newNet(t, 3, nil)
	net.publishAll()
	d, x := net.members[0].dht, net.members[2].node
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() {
			if i%4 == 0 {
				d.Invalidate(x.ID())
			}
			addrs, err := d.Resolve(timeout(t), x.ID())
			if err == nil && !sameAddrs(addrs, x.Host().Addrs()) {
				err = errors.New("wrong addresses")
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	// A caller that gives up gets its context's error at once.
	d.Invalidate(x.ID())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Resolve(ctx, x.ID()); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
}
