package p2p_test

import (
	"runtime"
	"slices"
	"sync"
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
	// a's streams end by idling out. Only a's: b closing a stream for
	// idleness as a writes its next message on it would fail that message
	// (docs/PROTOCOL.md §4.1), which a busy machine makes likely with a
	// timeout this short.
	idle := func(c *p2p.Config) {
		c.StreamIdleTimeout = p2p.MinStreamIdleTimeout
		// A stopped timer stays in the runtime's heap, with the stream
		// its function names, until its time would have come: the ack
		// deadline armed by the last send is the latest of them. Short,
		// then, but long enough for an ack on a busy machine.
		c.AckTimeout = time.Second
	}
	// Each stream a opens is taken as it opens: listed after the sends, a
	// stream may have idled out already (10 ms) on a busy machine.
	var (
		a           *p2p.Node
		mu          sync.Mutex
		gone, freed []<-chan struct{}
		seen        = make(map[<-chan struct{}]bool)
	)
	opened := p2p.WithOpenedHook(func() {
		g, f := p2p.StreamsOf(a)
		mu.Lock()
		defer mu.Unlock()
		for i := range g {
			if !seen[g[i]] {
				seen[g[i]] = true
				gone, freed = append(gone, g[i]), append(freed, f[i])
			}
		}
	})
	a = tu.Node(t, ia, list, idle, opened)
	b := tu.Node(t, ib, list)
	// The first message opens the stream through the peer's queue; the
	// second, the stream open and idle, is written by the node loop
	// itself, which lists the stream to flush (unless the stream idled
	// out in between: then it opens another, checked alike).
	for id := uint64(1); id <= 2; id++ {
		a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: b.Addrs()[0], ID: id, Data: []byte("x")}
		tu.Next[p2p.Data](t, b.Receiver())
		if st := nextOf(t, a, statusOf(id)); !st.OK {
			t.Fatalf("status %+v", st)
		}
	}
	mu.Lock()
	gone, freed = slices.Clone(gone), slices.Clone(freed)
	mu.Unlock()
	if len(gone) == 0 {
		t.Fatal("a opened no stream")
	}
	deadline := time.After(tu.Timeout)
	for i := range gone {
		select {
		case <-gone[i]:
		case <-deadline:
			t.Fatal("an idle stream did not end")
		}
		// The cleanup runs after a collection that finds the stream
		// unreachable: collect until it has run.
		for freedOne := false; !freedOne; {
			runtime.GC()
			select {
			case <-freed[i]:
				freedOne = true
			case <-time.After(10 * time.Millisecond):
			case <-deadline:
				t.Fatal("an ended stream is still reachable")
			}
		}
	}
}
