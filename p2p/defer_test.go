package p2p_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// Messages sent with Defer wait in the stream's buffer, and leave together
// once the sender calls Flush.
func TestDeferredMessagesLeaveAtFlush(t *testing.T) {
	a, b := pair(t)
	ctx := context.Background()
	send := func(id uint64, deferred bool) {
		t.Helper()
		m := p2p.SendMsg{Peer: b.ID(), ID: id, Data: []byte{byte(id)}, Defer: deferred}
		if id == 1 {
			m.Addr = b.Addrs()[0]
		}
		if err := a.SendMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// The first opens the stream, through the node's loop; once its ack
	// is in, the stream is idle and the next sends take the fast way.
	send(1, false)
	tu.Next[p2p.Data](t, b.Receiver())
	if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
		t.Fatalf("status %+v", st)
	}
	send(2, true)
	send(3, true)
	if n := p2p.BufferedTo(a, b.ID()); n == 0 {
		t.Fatal("deferred messages were flushed before Flush")
	}
	a.Flush()
	for id := byte(2); id <= 3; id++ {
		if d := tu.Next[p2p.Data](t, b.Receiver()); !bytes.Equal(d.Bytes, []byte{id}) {
			t.Fatalf("got %v, want message %d", d.Bytes, id)
		}
	}
	for id := uint64(2); id <= 3; id++ {
		if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK || st.MsgID != id {
			t.Fatalf("status %+v, want OK for %d", st, id)
		}
	}
	if n := p2p.BufferedTo(a, b.ID()); n != 0 {
		t.Fatalf("%d bytes left buffered after Flush", n)
	}
}

// A message Send writes while another of ours awaits its ack on the
// stream is left for the node's loop to flush, after the loop yields, so
// that the sends those acks prompt share a write; a message alone in
// flight leaves at once.
func TestSendAlongsideAwaitedAckLeftForTheLoop(t *testing.T) {
	const attempts = 10
	rung, loopGo := make(chan struct{}, 1), make(chan struct{})
	// b sees each message arrive (arrived, in order), and judges message
	// 2 only once the test says so: until then its ack is owed, and 2
	// stays in flight at a.
	arrived, judge2 := make(chan byte, attempts+4), make(chan struct{})
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, list, p2p.WithFlushLaterHook(func() {
		select {
		case rung <- struct{}{}:
		default:
		}
		<-loopGo
	}))
	b := tu.Node(t, ib, list, func(c *p2p.Config) {
		c.Accept = func(d p2p.Data) (p2p.Reason, func() p2p.Reason) {
			arrived <- d.Bytes[0]
			if d.Bytes[0] == 2 {
				return p2p.ReasonOK, func() p2p.Reason { <-judge2; return p2p.ReasonOK }
			}
			return p2p.ReasonOK, nil
		}
	})
	// Run before the nodes' Close (cleanups run last in, first out),
	// which would otherwise wait for the held loop and verdict.
	var release sync.Once
	releaseAll := func() { release.Do(func() { close(loopGo); close(judge2) }) }
	t.Cleanup(releaseAll)
	ctx := context.Background()
	send := func(id byte) {
		t.Helper()
		m := p2p.SendMsg{Peer: b.ID(), ID: uint64(id), Data: []byte{id}}
		if id == 1 {
			m.Addr = b.Addrs()[0]
		}
		if err := a.SendMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	awaitArrival := func(id byte) {
		t.Helper()
		select {
		case got := <-arrived:
			if got != id {
				t.Fatalf("message %d arrived, want %d", got, id)
			}
		case <-rung:
			t.Fatalf("message %d, alone in flight, was left for the loop", id)
		case <-time.After(tu.Timeout):
			t.Fatalf("message %d did not arrive", id)
		}
	}
	// The first opens the stream, through the node's loop; once its ack
	// is in, the stream is idle and the next sends take the fast way.
	send(1)
	awaitArrival(1)
	tu.Next[p2p.Data](t, b.Receiver())
	if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
		t.Fatalf("status %+v", st)
	}
	// Alone in flight: it leaves at once, and the loop, which would
	// hold it, never gets it.
	send(2)
	awaitArrival(2)

	// The fast way is taken when nothing stands in its way (the write
	// lock free, nothing spilled), which a loaded machine can deny for a
	// moment: a message that goes the node loop's way instead arrives,
	// and the next is tried. One that takes it, with 2 awaiting its ack,
	// stays buffered until the loop, held in the hook, flushes it.
	last := byte(0)
	for id := byte(3); last == 0; id++ {
		if id >= 3+attempts {
			t.Fatalf("none of %d messages sent while another awaited its ack was left for the loop", attempts)
		}
		send(id)
		select {
		case <-rung:
			last = id
		case got := <-arrived:
			if got != id {
				t.Fatalf("message %d arrived, want %d", got, id)
			}
		case <-time.After(tu.Timeout):
			t.Fatalf("message %d neither arrived nor was left for the loop", id)
		}
	}
	if n := p2p.BufferedTo(a, b.ID()); n == 0 {
		t.Fatalf("message %d, left for the loop, was flushed before the loop flushed it", last)
	}
	releaseAll()
	for id := byte(2); id <= last; id++ {
		if d := tu.Next[p2p.Data](t, b.Receiver()); !bytes.Equal(d.Bytes, []byte{id}) {
			t.Fatalf("got %v, want message %d", d.Bytes, id)
		}
	}
	for id := uint64(2); id <= uint64(last); id++ {
		if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK || st.MsgID != id {
			t.Fatalf("status %+v, want OK for %d", st, id)
		}
	}
}
