package dht_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/dht"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// Two operators: one runs a bootstrap node, the other joins through it and
// looks the first up by peer ID alone.
func Example() {
	keyA, _, _ := crypto.GenerateSecp256k1Key(rand.Reader)
	keyB, _, _ := crypto.GenerateSecp256k1Key(rand.Reader)
	idA, _ := peer.IDFromPrivateKey(keyA)
	idB, _ := peer.IDFromPrivateKey(keyB)
	list, _ := allowlist.New(allowlist.Entry{ID: idA}, allowlist.Entry{ID: idB})

	nodeA, _ := p2p.New(p2p.Config{Key: keyA, Allowlist: list})
	defer nodeA.Close()
	nodeB, _ := p2p.New(p2p.Config{Key: keyB, Allowlist: list})
	defer nodeB.Close()

	// A has no bootstrap peers: it is a bootstrap node.
	dhtA, _ := dht.New(nodeA, dht.Config{})
	defer dhtA.Close()
	bootstrap, _ := dht.ParseBootstrap(nodeA.Addrs()[0].String())
	dhtB, _ := dht.New(nodeB, dht.Config{Bootstrap: bootstrap})
	defer dhtB.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Each waits until its routing table holds the other: B's learns A
	// through B's own bootstrap, which may end after A has heard of B.
	for _, d := range []*dht.DHT{dhtA, dhtB} {
		if err := d.WaitReady(ctx); err != nil {
			fmt.Println(err)
			return
		}
	}
	// Each node publishes its record on its own once ready; publishing
	// explicitly makes the example independent of that timing.
	if _, err := dhtA.Publish(ctx); err != nil {
		fmt.Println(err)
		return
	}

	rec, err := dhtB.Find(ctx, idA)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("found A:", rec.Peer == idA)
	fmt.Println("addresses match:", rec.Addrs[0].Equal(nodeA.Host().Addrs()[0]))
	fmt.Println("active:", !rec.Expired(time.Now()))

	addrs, _ := dhtB.Resolve(ctx, idA)
	fmt.Println("resolved:", len(addrs) > 0)
	// Output:
	// found A: true
	// addresses match: true
	// active: true
	// resolved: true
}
