package p2p_test

import (
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// Node.Hold: a DisconnectFrom drains the message streams but leaves the
// connection up while a hold on the peer lasts, and closes it once the
// hold is released.
func TestHoldDefersDisconnect(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a, b := tu.Node(t, ia, list), tu.Node(t, ib, list)
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: b.Addrs()[0], ID: 1, Data: []byte("q")}
	if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
		t.Fatalf("status %+v", st)
	}
	release := a.Hold(ib.ID)
	a.Sender() <- p2p.DisconnectFrom{Peer: ib.ID}
	// Unheld, the connection closes within a round trip or two (the
	// drain owes nothing); held, it must stay.
	tu.None[p2p.Disconnected](t, a.Receiver(), 300*time.Millisecond)
	release()
	release() // twice: releases once
	tu.Next[p2p.Disconnected](t, a.Receiver())

	// A hold on a connection with no message stream defers the close too.
	if err := a.Host().Connect(t.Context(), tu.AddrInfo(b)); err != nil {
		t.Fatal(err)
	}
	tu.Next[p2p.Connected](t, a.Receiver())
	release = a.Hold(ib.ID)
	a.Sender() <- p2p.DisconnectFrom{Peer: ib.ID}
	tu.None[p2p.Disconnected](t, a.Receiver(), 300*time.Millisecond)
	release()
	tu.Next[p2p.Disconnected](t, a.Receiver())
}
