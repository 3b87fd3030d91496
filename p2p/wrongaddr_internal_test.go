package p2p

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
)

// An address that proved another key is refused for its peer for the TTL
// only, for that peer only, whatever /p2p suffix it is written with; and
// a flood of them cannot grow the cache past its bound.
func TestWrongAddrsExpireAndStayBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	w := newAddrMemory(func() time.Time { return now }, wrongAddrTTL)
	w.max = 8
	a, b := newTestID(t), newTestID(t)
	x := ma.StringCast("/ip4/127.0.0.3/tcp/4001")
	w.add(a, x.Encapsulate(ma.StringCast("/p2p/"+b.String())))
	switch {
	case !w.holds(a, x) || !w.anyFor(a):
		t.Fatal("the wrong address is not remembered")
	case w.holds(b, x) || w.anyFor(b):
		t.Fatal("the address is refused for the peer whose key it holds")
	case w.holds(a, ma.StringCast("/ip4/127.0.0.3/tcp/4002")):
		t.Fatal("another address of the peer is refused")
	}
	now = now.Add(wrongAddrTTL - time.Nanosecond)
	if !w.holds(a, x) {
		t.Fatal("forgotten before its TTL")
	}
	now = now.Add(time.Nanosecond)
	if w.holds(a, x) || w.anyFor(a) {
		t.Fatal("remembered past its TTL")
	}
	for i := range 100 {
		now = now.Add(time.Millisecond)
		w.add(a, ma.StringCast(fmt.Sprintf("/ip4/127.0.0.3/tcp/%d", 5000+i)))
		if len(w.until) > w.max {
			t.Fatalf("%d entries, bound %d", len(w.until), w.max)
		}
	}
	if !w.holds(a, ma.StringCast("/ip4/127.0.0.3/tcp/5099")) {
		t.Fatal("the newest entry was the one dropped")
	}
}

// A dial left with no address because p's proved to hold another key says
// so whoever made it (the DHT's dials map their errors through DialError),
// and callers can branch on ErrWrongAddress; another peer's dial that
// found no address is left as it is.
func TestDialErrorSaysWrongAddress(t *testing.T) {
	n := &Node{wrong: newAddrMemory(time.Now, wrongAddrTTL)}
	a, b := newTestID(t), newTestID(t)
	n.wrong.add(a, ma.StringCast("/ip4/127.0.0.3/tcp/4001"))
	noAddr := fmt.Errorf("failed to dial: %w", swarm.ErrNoGoodAddresses)
	err := n.DialError(a, noAddr)
	if !errors.Is(err, ErrWrongAddress) || !errors.Is(err, swarm.ErrNoGoodAddresses) {
		t.Fatalf("dial of a peer whose address proved wrong: %v", err)
	}
	if err := n.DialError(b, noAddr); err != noAddr {
		t.Fatalf("another peer's dial: %v", err)
	}
}
