package p2p_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// Every SendMsg that Send accepted (returned nil) gets its one Status, even
// when Close follows at once: Close's doc promises ReasonClosed to the
// messages not yet acked when the Receiver has room, and here it has room
// for all of them. The node loop must not end with SendMsgs still in its
// Sender channel and drop them without a word.
func TestSendThenCloseEveryMessageGetsStatus(t *testing.T) {
	const n = 512
	for round := 0; round < 10; round++ {
		ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
		list := tu.Allowlist(t, ia, ib)
		a := tu.Node(t, ia, list, func(c *p2p.Config) {
			c.SenderBuffer = n
			c.ReceiverBuffer = 4 * n
		})
		for i := 1; i <= n; i++ {
			// No address and no connection: each fails not_connected,
			// or closed once the node is closing.
			if err := a.Send(context.Background(), p2p.SendMsg{Peer: ib.ID, ID: uint64(i), Data: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
		a.Close()
		got := make(map[uint64]int)
		for ev := range a.Receiver() { // closed by Close: bounded
			if st, ok := ev.(p2p.Status); ok {
				got[st.MsgID]++
			}
		}
		for i := uint64(1); i <= n; i++ {
			if got[i] != 1 {
				missing := 0
				for j := uint64(1); j <= n; j++ {
					if got[j] == 0 {
						missing++
					}
				}
				t.Fatalf("round %d: message %d got %d Statuses; %d of %d accepted messages got none", round, i, got[i], missing, n)
			}
		}
	}
}

// A Dial handled while a DisconnectFrom is closing the connection to the
// peer (here held open by Node.Hold, as the membership gossip does) must
// connect again once that connection is gone, as a SendMsg does
// (sender.go waits for the drain). It must not take the doomed connection
// for its success: the node then ends disconnected, with neither the
// Connected nor the Error that Dial promises.
func TestDialDuringDisconnectConnects(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a, b := tu.Node(t, ia, list), tu.Node(t, ib, list)
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: b.Addrs()[0], ID: 1, Data: []byte("q")}
	if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
		t.Fatalf("status %+v", st)
	}
	old := a.Host().Network().ConnsToPeer(ib.ID)
	if len(old) != 1 {
		t.Fatalf("%d connections", len(old))
	}
	fresh := make(chan struct{}, 1)
	nb := &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if c.RemotePeer() == ib.ID && c != old[0] {
			select {
			case fresh <- struct{}{}:
			default:
			}
		}
	}}
	a.Host().Network().Notify(nb)
	defer a.Host().Network().StopNotify(nb)

	release := a.Hold(ib.ID)
	a.Sender() <- p2p.DisconnectFrom{Peer: ib.ID}
	a.Sender() <- p2p.Dial{Peer: ib.ID, Addr: b.Addrs()[0]}
	// The Dial cannot be through while the hold keeps the old connection.
	tu.None[p2p.Error](t, a.Receiver(), 300*time.Millisecond)
	release()
	select {
	case <-fresh:
	case <-time.After(tu.Timeout):
		t.Fatalf("the Dial made no connection; connected now: %v", a.Host().Network().Connectedness(ib.ID))
	}
}

// A stream this node opens while Close is under way, after Close listed
// the streams it drains, has its connection closed by the host's close,
// before the peer answered anything on it. This node closed it, the peer
// refused nothing: the message is reported closed, and its Err must not
// match ErrClosedAtHandshake, whose text tells the operator that the peer
// may not allowlist them. Only the reason used to be rewritten.
func TestStreamOpenedDuringCloseIsNotARefusal(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	o := newOrderedStream(1)
	opening, listed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	opts := append(o.options(),
		p2p.WithOpenHook(func() {
			once.Do(func() {
				close(opening)
				waitFor(listed)
			})
		}),
		// Close lets the stream be opened once its drain is done, and
		// closes the host once the stream's first write is held.
		p2p.WithCloseDrainedHook(func() {
			close(listed)
			waitFor(o.writing)
		}))
	a := tu.Node(t, ia, tu.Allowlist(t, ia, ib), opts...)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib))
	defer o.unblock()
	lost := make(chan struct{})
	var lostOnce sync.Once
	a.Host().Network().Notify(&network.NotifyBundle{DisconnectedF: func(_ network.Network, c network.Conn) {
		if c.RemotePeer() == ib.ID {
			lostOnce.Do(func() { close(lost) })
		}
	}})

	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: b.Addrs()[0], ID: 1, Data: []byte("late")}
	await(t, opening, "the stream's opening")
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		a.Close()
	}()
	await(t, o.writing, "the first write held")
	await(t, lost, "the host's close of the connection")
	o.letGo()
	st := nextOf(t, a, statusOf(1))
	if st.Reason != p2p.ReasonClosed || errors.Is(st.Err, p2p.ErrClosedAtHandshake) {
		t.Fatalf("status %+v (%v), want closed, not %v", st, st.Err, p2p.ErrClosedAtHandshake)
	}
	await(t, closed, "Close")
}
