package p2p_test

import (
	"bytes"
	"context"
	"testing"

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
