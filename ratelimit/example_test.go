package ratelimit_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// A peer that keeps sending malformed frames is cut off once its bucket is
// empty, refused while banned, and let back in when the ban ends. The clock
// is injected only to make the output reproducible; real code leaves
// Config.Now unset.
func Example() {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := ratelimit.New(ratelimit.Config{
		Burst:       3,
		Refill:      time.Second,
		BanDuration: 10 * time.Second,
		Now:         func() time.Time { return now },
	})

	for i := 1; i <= 4; i++ {
		v := l.SpendPeer("12D3KooWExample", ratelimit.MalformedMessage)
		if v.NewlyExhausted {
			// Here the p2p layer disconnects the peer and emits
			// ConnectionLimit.
			fmt.Printf("spend %d: exhausted, banned for %v\n", i, v.Until.Sub(now))
			continue
		}
		fmt.Printf("spend %d: %.0f tokens left\n", i, v.Remaining)
	}

	// The connection gater asks on every connection.
	fmt.Println("banned:", l.PeerBanned("12D3KooWExample"))
	now = now.Add(10 * time.Second)
	fmt.Println("banned after 10s:", l.PeerBanned("12D3KooWExample"))

	// Failed handshakes are charged to the source address instead.
	v := l.SpendIP(netip.MustParseAddr("192.0.2.1"), ratelimit.FailedHandshake)
	fmt.Printf("%s from 192.0.2.1: %.0f tokens left\n", ratelimit.FailedHandshake, v.Remaining)

	// Output:
	// spend 1: 2 tokens left
	// spend 2: 1 tokens left
	// spend 3: 0 tokens left
	// spend 4: exhausted, banned for 10s
	// banned: true
	// banned after 10s: false
	// failed_handshake from 192.0.2.1: 2 tokens left
}
