package handler_test

import (
	"crypto/rand"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
)

// Two operators on one machine: alice asks, bob answers. Neither needs a
// goroutine of its own; here bob's answering runs in one only because both
// live in one program.
func ExampleHandler() {
	aliceKey, _, _ := crypto.GenerateSecp256k1Key(rand.Reader)
	bobKey, _, _ := crypto.GenerateSecp256k1Key(rand.Reader)
	aliceID, _ := peer.IDFromPrivateKey(aliceKey)
	bobID, _ := peer.IDFromPrivateKey(bobKey)
	list, _ := allowlist.New(allowlist.Entry{ID: aliceID}, allowlist.Entry{ID: bobID})

	alice, err := handler.New(nil, aliceKey, list)
	if err != nil {
		panic(err)
	}
	defer alice.Close()
	bob, err := handler.New(nil, bobKey, list)
	if err != nil {
		panic(err)
	}
	defer bob.Close()

	// Bob answers every request with its reverse.
	go func() {
		for ev := range bob.Events() {
			if req, ok := ev.(*handler.Request); ok {
				reply := []byte(string(req.Data))
				for i, j := 0, len(reply)-1; i < j; i, j = i+1, j-1 {
					reply[i], reply[j] = reply[j], reply[i]
				}
				bob.Response(req.From, req.Exchange, reply)
			}
		}
	}()

	id, err := alice.Request(bobID, bob.Addrs()[0], []byte("stressed"))
	if err != nil {
		panic(err)
	}
	// The reply and the outcome come on two channels; wait for both.
	for replied, ended := false, false; !replied || !ended; {
		select {
		case ev := <-alice.Events():
			if rep, ok := ev.(*handler.Reply); ok && rep.Exchange == id {
				fmt.Printf("reply: %s\n", rep.Data)
				replied = true
			}
		case ev := <-alice.Outcomes():
			if o, ok := ev.(*handler.Outcome); ok && o.Exchange == id {
				fmt.Printf("outcome: %s\n", o.Reason)
				ended = true
				replied = replied || !o.OK // no reply comes after a failure
			}
		}
	}
	// Unordered output:
	// reply: desserts
	// outcome: ok
}
