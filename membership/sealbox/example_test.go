package sealbox_test

import (
	"crypto/rand"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/membership/sealbox"
)

func Example() {
	alice, _, _ := crypto.GenerateSecp256k1Key(rand.Reader)
	bob, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	carol, _, _ := crypto.GenerateSecp256k1Key(rand.Reader)
	aliceID, _ := peer.IDFromPrivateKey(alice)
	bobID, _ := peer.IDFromPrivateKey(bob)

	box, skipped, err := sealbox.Seal("example/1", []peer.ID{aliceID, bobID}, []byte("/ip4/10.0.0.1/tcp/4001"))
	if err != nil || len(skipped) > 0 {
		panic(err)
	}
	fromBob, err := sealbox.Open("example/1", bob, box)
	fmt.Printf("bob: %s %v\n", fromBob, err)
	_, err = sealbox.Open("example/1", carol, box)
	fmt.Println("carol can read:", err == nil)
	// Output:
	// bob: /ip4/10.0.0.1/tcp/4001 <nil>
	// carol can read: false
}
