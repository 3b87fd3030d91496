package p2p_test

import (
	"runtime"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// A message stream that has ended is not kept by its node. The peer's
// sender kept the last stream it wrote to until its next message to the
// peer, which for a quiet peer never comes, and with it the stream's timers
// and any read buffer it held (16 KiB): most of what an idle connection
// cost beyond bare go-libp2p's once its stream had closed. The node loop's
// list of streams to flush, cut but not cleared, kept them too.
func TestEndedStreamIsFreed(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	idle := func(c *p2p.Config) {
		c.StreamIdleTimeout = p2p.MinStreamIdleTimeout
		// A stopped timer stays in the runtime's heap, with the stream
		// its function names, until its time would have come: the ack
		// deadline armed by the last send is the latest of them.
		c.AckTimeout = 200 * time.Millisecond
	}
	a := tu.Node(t, ia, list, idle)
	b := tu.Node(t, ib, list, idle)
	// The first message opens the stream through the peer's queue; the
	// second, the stream open and idle, is written by the node loop
	// itself, which lists the stream to flush.
	for id := uint64(1); id <= 2; id++ {
		a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: b.Addrs()[0], ID: id, Data: []byte("x")}
		tu.Next[p2p.Data](t, b.Receiver())
		if st := nextOf(t, a, statusOf(id)); !st.OK {
			t.Fatalf("status %+v", st)
		}
	}
	gone, freed := p2p.StreamsOf(a)
	if len(gone) != 1 {
		t.Fatalf("%d streams, want the one a opened", len(gone))
	}
	deadline := time.After(tu.Timeout)
	select {
	case <-gone[0]:
	case <-deadline:
		t.Fatal("the idle stream did not end")
	}
	// The cleanup runs after a collection that finds the stream
	// unreachable: collect until it has run.
	for {
		runtime.GC()
		select {
		case <-freed[0]:
			return
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("the ended stream is still reachable")
		}
	}
}
