package p2p_test

import (
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

func TestConnectedPeers(t *testing.T) {
	a, b := pair(t)
	if ps := a.ConnectedPeers(); len(ps) != 0 {
		t.Fatalf("before any connection: %+v", ps)
	}
	before := time.Now()
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: []byte("hi")}
	testutil.Next[p2p.Connected](t, a.Receiver())
	testutil.Next[p2p.Connected](t, b.Receiver())
	ps := a.ConnectedPeers()
	if len(ps) != 1 || ps[0].Peer != b.ID() || !ps[0].Outbound || ps[0].Inbound || len(ps[0].Addrs) != 1 ||
		ps[0].Since.Before(before.Add(-time.Second)) {
		t.Fatalf("a's view: %+v", ps)
	}
	ps = b.ConnectedPeers()
	if len(ps) != 1 || ps[0].Peer != a.ID() || !ps[0].Inbound || ps[0].Outbound {
		t.Fatalf("b's view: %+v", ps)
	}
}
