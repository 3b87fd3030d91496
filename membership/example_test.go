package membership_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// Three operators start with M = 2; two of them remove the third.
func Example() {
	var (
		keys    []crypto.PrivKey
		members []membership.Member
	)
	for _, name := range []string{"alice", "bob", "carol"} {
		k, _, _ := crypto.GenerateSecp256k1Key(rand.Reader)
		id, _ := peer.IDFromPrivateKey(k)
		keys = append(keys, k)
		members = append(members, membership.Member{ID: id, Name: name})
	}
	carol := members[2].ID

	// Version 1 is installed by each operator: no signatures needed.
	genesis, err := membership.Genesis(members, 2, time.Time{})
	if err != nil {
		panic(err)
	}

	// Version 2 drops carol.
	next := genesis.Next()
	next.Members = slices.DeleteFunc(next.Members, func(m membership.Member) bool { return m.ID == carol })
	next.Threshold = 2
	proposal, err := membership.NewDocument(next)
	if err != nil {
		panic(err)
	}
	_ = proposal.Sign(keys[0])
	_, err = membership.VerifyNext(genesis, proposal, time.Now())
	fmt.Println("alice alone:", errors.Is(err, membership.ErrThreshold))

	_ = proposal.Sign(keys[1])
	report, err := membership.VerifyNext(genesis, proposal, time.Now())
	fmt.Println("alice and bob:", err == nil, len(report.Counted), "of", report.Threshold)
	fmt.Println("allowlist entries:", len(proposal.Entries()))
	// Output:
	// alice alone: true
	// alice and bob: true 2 of 2
	// allowlist entries: 2
}
