package test

import (
	"context"
	"fmt"
	"testing"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// TestDefaultsNeverCutOffHonestPeers is the other side of the hostile
// suite: with the default budget, nodes doing everything an operator's node
// does on an ordinary day (pipelined bursts, a receiver too slow to keep up,
// disconnects and redials, both sides dialing at once, a restart) are never
// cut off, and in fact never spend a single token.
func TestDefaultsNeverCutOffHonestPeers(t *testing.T) {
	ia, ib, ic := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib, ic)
	a := tu.Node(t, ia, list)
	b := tu.Node(t, ib, list)
	ra, rb := record(t, a), record(t, b)
	nextID := uint64(0)
	send := func(from *p2p.Node, to *p2p.Node) uint64 {
		t.Helper()
		nextID++
		msg := p2p.SendMsg{Peer: to.ID(), Addr: to.Addrs()[0], ID: nextID, Data: []byte("ordinary")}
		if err := from.Send(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
		return nextID
	}
	acked := func(r *recorder, id uint64) p2p.Status {
		t.Helper()
		return waitFor(t, r, fmt.Sprintf("status of %d", id), func(s p2p.Status) bool { return s.MsgID == id })
	}
	mustAck := func(r *recorder, id uint64) {
		t.Helper()
		if st := acked(r, id); !st.OK {
			t.Fatalf("message %d: %+v", id, st)
		}
	}

	// A pipelined burst each way.
	var ids []uint64
	for range 300 {
		ids = append(ids, send(a, b))
	}
	for range 300 {
		ids = append(ids, send(b, a))
	}
	for _, id := range ids[:300] {
		mustAck(ra, id)
	}
	for _, id := range ids[300:] {
		mustAck(rb, id)
	}

	// A receiver whose application does not read: its buffer fills and it
	// answers "busy", which is flow control, not misbehaviour. So is the
	// sender's own queue filling ("queue_full"), which a burst this size
	// does when the sending goroutine outruns the node (one CPU).
	c := tu.Node(t, ic, list) // nobody reads its Receiver
	busy, full := 0, 0
	ids = ids[:0]
	for range p2p.DefaultReceiverBuffer + 200 {
		ids = append(ids, send(a, c))
	}
	for _, id := range ids {
		st := acked(ra, id)
		switch {
		case st.OK:
		case st.Reason == p2p.ReasonBusy:
			busy++
		case st.Reason == p2p.ReasonQueueFull:
			full++
		default:
			t.Fatalf("message %d to a slow receiver: %+v", id, st)
		}
	}
	if busy == 0 {
		t.Error("a receiver that never reads never answered busy")
	}
	t.Logf("slow receiver answered busy %d times; the sender's queue was full %d times", busy, full)

	// Disconnects and redials, from either side, and both dialing at once.
	// (Each waits until both sides have seen the disconnect: a message
	// sent into a connection the other side is closing is reported
	// connection_lost, rightly, and is not what this test is about.)
	for i := range 10 {
		from, to := a, b
		if i%2 == 1 {
			from, to = b, a
		}
		da, db := len(ra.snapshot()), len(rb.snapshot())
		if err := from.Send(context.Background(), p2p.DisconnectFrom{Peer: to.ID()}); err != nil {
			t.Fatal(err)
		}
		waitAfter(t, ra, da, "a disconnected", func(d p2p.Disconnected) bool { return d.Peer == ib.ID })
		waitAfter(t, rb, db, "b disconnected", func(d p2p.Disconnected) bool { return d.Peer == ia.ID })
		x, y := send(a, b), send(b, a)
		mustAck(ra, x)
		mustAck(rb, y)
	}

	// A restart: the same key comes back as a new process.
	a.Close()
	a2 := tu.Node(t, ia, list)
	ra2 := record(t, a2)
	mustAck(ra2, send(a2, b))
	mustAck(rb, send(b, a2))

	for name, n := range map[string]*p2p.Node{"a": a2, "b": b, "c": c} {
		st := n.Limiter().Stats()
		if spent := st.Peers.Spent.Total() + st.IPs.Spent.Total(); spent != 0 {
			t.Errorf("node %s spent %d tokens on honest peers: %+v", name, spent, st)
		}
	}
	for name, r := range map[string]*recorder{"a": ra, "a2": ra2, "b": rb} {
		if ev, ok := find(r.snapshot(), func(p2p.ConnectionLimit) bool { return true }); ok {
			t.Errorf("node %s cut off an honest peer: %+v", name, ev)
		}
	}
}

// waitAfter waits for an event of type T that match accepts among those
// recorded after the first skip.
func waitAfter[T p2p.Event](t *testing.T, r *recorder, skip int, what string, match func(T) bool) {
	t.Helper()
	r.wait(t, what, func(evs []p2p.Event) bool {
		_, ok := find(evs[skip:], match)
		return ok
	})
}
