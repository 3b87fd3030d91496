package p2p_test

import (
	"fmt"
	"log"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// Two operators' nodes on loopback: one sends a message, the other receives
// it, and the sender gets its acknowledgment. No goroutines of the caller's
// own: commands go in on Sender, events come out of Receiver.
func ExampleNode() {
	keyA, _ := p2p.GenerateKey(p2p.Secp256k1)
	keyB, _ := p2p.GenerateKey(p2p.Secp256k1)
	idA, _ := peer.IDFromPrivateKey(keyA)
	idB, _ := peer.IDFromPrivateKey(keyB)
	list, err := allowlist.New(allowlist.Entry{ID: idA, Name: "operator-a"}, allowlist.Entry{ID: idB, Name: "operator-b"})
	if err != nil {
		log.Fatal(err)
	}

	a, err := p2p.New(p2p.Config{Key: keyA, Allowlist: list})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := p2p.New(p2p.Config{Key: keyB, Allowlist: list})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: []byte("nonce commitment")}

	for ev := range b.Receiver() {
		if d, ok := ev.(p2p.Data); ok {
			fmt.Printf("b received %q from a: %v\n", d.Bytes, d.From == a.ID())
			break
		}
	}
	for ev := range a.Receiver() {
		if st, ok := ev.(p2p.Status); ok {
			fmt.Printf("a's message %d acknowledged: %v\n", st.MsgID, st.OK)
			break
		}
	}
	// Output:
	// b received "nonce commitment" from a: true
	// a's message 1 acknowledged: true
}
