package p2p_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// pair starts two nodes that allowlist each other.
func pair(t *testing.T, mutate ...func(*p2p.Config)) (a, b *p2p.Node) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	return tu.Node(t, ia, list, mutate...), tu.Node(t, ib, list, mutate...)
}

func TestSendAndAck(t *testing.T) {
	a, b := pair(t)
	msg := []byte("hello operator")
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 7, Channel: 3, Data: msg}

	// Connected comes first: the connection exists before its first stream.
	c := tu.Next[p2p.Connected](t, b.Receiver())
	if c.Peer != a.ID() || !c.Inbound {
		t.Fatalf("connected %+v", c)
	}
	d := tu.Next[p2p.Data](t, b.Receiver())
	if d.From != a.ID() || !bytes.Equal(d.Bytes, msg) || d.Channel != 3 {
		t.Fatalf("got %+v", d)
	}
	st := tu.Next[p2p.Status](t, a.Receiver())
	if !st.OK || st.MsgID != 7 || st.Peer != b.ID() || st.Reason != p2p.ReasonOK {
		t.Fatalf("status %+v", st)
	}
}

func TestManyInFlightAllAcked(t *testing.T) {
	a, b := pair(t, func(c *p2p.Config) { c.MaxInFlight = 8 })
	const n = 500
	go func() {
		for i := 1; i <= n; i++ {
			a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: uint64(i), Data: []byte{byte(i)}}
		}
	}()
	for i := 1; i <= n; i++ {
		d := tu.Next[p2p.Data](t, b.Receiver())
		if d.Bytes[0] != byte(i) {
			t.Fatalf("message %d out of order: %v", i, d.Bytes)
		}
	}
	for i := 1; i <= n; i++ {
		st := tu.Next[p2p.Status](t, a.Receiver())
		if !st.OK || st.MsgID != uint64(i) {
			t.Fatalf("status %d: %+v", i, st)
		}
	}
}

func TestNotOKReasonsDecidedLocally(t *testing.T) {
	ia, ib, stranger := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, list, func(c *p2p.Config) { c.MaxMessageSize = 100; c.DialTimeout = 2 * time.Second })

	// A closed port: nothing listens there once the probe node is gone.
	probe := tu.Node(t, tu.NewIdentity(t), list)
	deadAddr := probe.Addrs()[0]
	probe.Close()

	cases := []struct {
		name string
		msg  p2p.SendMsg
		want p2p.Reason
	}{
		{"not allowlisted", p2p.SendMsg{Peer: stranger.ID, Addr: deadAddr}, p2p.ReasonRejected},
		{"too large", p2p.SendMsg{Peer: ib.ID, Addr: deadAddr, Data: make([]byte, 101)}, p2p.ReasonTooLarge},
		{"no address", p2p.SendMsg{Peer: ib.ID}, p2p.ReasonNotConnected},
		{"dial fails", p2p.SendMsg{Peer: ib.ID, Addr: tpt(deadAddr)}, p2p.ReasonDialFailed},
		{"address of another peer", p2p.SendMsg{Peer: ib.ID, Addr: deadAddr}, p2p.ReasonDialFailed},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.msg.ID = uint64(i + 1)
			a.Sender() <- tc.msg
			st := tu.Next[p2p.Status](t, a.Receiver())
			if st.OK || st.Reason != tc.want || st.MsgID != tc.msg.ID {
				t.Fatalf("got %+v, want reason %s", st, tc.want)
			}
		})
	}
}

func TestOversizedRejectedByReceiver(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, list, func(c *p2p.Config) { c.MaxMessageSize = 4 << 20 })
	b := tu.Node(t, ib, list, func(c *p2p.Config) { c.MaxMessageSize = 1 << 20 })

	for i, size := range []int{1<<20 + 1, 3 << 20} {
		a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: uint64(i + 1), Data: make([]byte, size)}
		st := tu.Next[p2p.Status](t, a.Receiver())
		if st.OK || st.Reason != p2p.ReasonTooLarge {
			t.Fatalf("size %d: %+v", size, st)
		}
	}
	// The limit is the payload's: exactly 1 MiB still goes through.
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 9, Data: make([]byte, 1<<20)}
	if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
		t.Fatalf("1 MiB: %+v", st)
	}
	if d := tu.Next[p2p.Data](t, b.Receiver()); len(d.Bytes) != 1<<20 {
		t.Fatalf("delivered %d bytes", len(d.Bytes))
	}
}

func TestFullReceiverGivesBusyAndDropped(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, list)
	b := tu.Node(t, ib, list, func(c *p2p.Config) { c.ReceiverBuffer = 1 })

	// Fill b's one-slot buffer with its own Connected event, so the data
	// finds it full: dial first and wait for a's side to see the connection.
	a.Sender() <- p2p.Dial{Peer: b.ID(), Addr: b.Addrs()[0]}
	tu.Next[p2p.Connected](t, a.Receiver())

	const n = 3
	for i := 1; i <= n; i++ {
		a.Sender() <- p2p.SendMsg{Peer: b.ID(), ID: uint64(i), Data: []byte("x")}
	}
	for i := 1; i <= n; i++ {
		st := tu.Next[p2p.Status](t, a.Receiver())
		if st.OK || st.Reason != p2p.ReasonBusy || st.MsgID != uint64(i) {
			t.Fatalf("status %d: %+v", i, st)
		}
	}
	var dropped uint64
	for dropped < n {
		dropped += tu.Next[p2p.Dropped](t, b.Priority()).Count
	}
	if dropped != n {
		t.Fatalf("dropped %d, want %d", dropped, n)
	}
	// Once the caller reads, messages flow again.
	tu.Next[p2p.Connected](t, b.Receiver())
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), ID: 10, Data: []byte("y")}
	if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
		t.Fatalf("after draining: %+v", st)
	}
}

func TestNotRouted(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	routes, err := allowlist.NewRoutes(allowlist.Route{FromPeer: ia.ID, FromChannel: 1, ToChannel: 2})
	if err != nil {
		t.Fatal(err)
	}
	a := tu.Node(t, ia, list)
	b := tu.Node(t, ib, list, func(c *p2p.Config) { c.Routes = routes })

	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, FromChannel: 1, Channel: 3, Data: []byte("no")}
	if st := tu.Next[p2p.Status](t, a.Receiver()); st.OK || st.Reason != p2p.ReasonNotRouted {
		t.Fatalf("status %+v", st)
	}
	if e := tu.Next[p2p.Error](t, b.Receiver()); e.Peer != a.ID() {
		t.Fatalf("error %+v", e)
	}
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), ID: 2, FromChannel: 1, Channel: 2, Data: []byte("yes")}
	if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
		t.Fatalf("status %+v", st)
	}
	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "yes" {
		t.Fatalf("delivered %q; the refused message must never be", d.Bytes)
	}
}

func TestRedialAfterDisconnect(t *testing.T) {
	a, b := pair(t)
	for i := 1; i <= 5; i++ {
		a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: uint64(i), Data: []byte{byte(i)}}
		if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
			t.Fatalf("round %d: %+v", i, st)
		}
		tu.Next[p2p.Data](t, b.Receiver())
		// Alternate which side hangs up.
		closer, other := a, b
		if i%2 == 0 {
			closer, other = b, a
		}
		closer.Sender() <- p2p.DisconnectFrom{Peer: other.ID()}
		tu.Next[p2p.Disconnected](t, a.Receiver())
	}
}

func TestDisconnectAllStopsNode(t *testing.T) {
	a, b := pair(t)
	a.Sender() <- p2p.Dial{Peer: b.ID(), Addr: b.Addrs()[0]}
	tu.Next[p2p.Connected](t, b.Receiver())
	a.Sender() <- p2p.DisconnectFrom{}
	tu.Next[p2p.Disconnected](t, b.Receiver())
	deadline := time.After(tu.Timeout)
	for {
		select {
		case _, ok := <-a.Receiver():
			if !ok {
				if err := a.Send(context.Background(), p2p.Dial{}); err != p2p.ErrClosed {
					t.Fatalf("Send after stop: %v", err)
				}
				return
			}
		case <-deadline:
			t.Fatal("receiver not closed after DisconnectFrom{}")
		}
	}
}

func TestCloseFailsPendingMessages(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, list, func(c *p2p.Config) { c.AckTimeout = time.Minute })
	// b is a raw host that accepts the stream and never answers.
	raw := tu.RawHost(t, ib.Key, "127.0.0.1")
	got := make(chan struct{}, 1)
	raw.SetStreamHandler(p2p.ProtocolID, silentHandler(got))
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: raw.Addrs()[0], ID: 1, Data: []byte("x")}
	<-got
	a.Close()
	var st p2p.Status
	for ev := range a.Receiver() {
		if s, ok := ev.(p2p.Status); ok {
			st = s
		}
	}
	if st.MsgID != 1 || st.Reason != p2p.ReasonClosed {
		t.Fatalf("status %+v", st)
	}
}

func tpt(a ma.Multiaddr) ma.Multiaddr {
	t, _ := peer.SplitAddr(a)
	return t
}

func TestAddrsCarryPeerID(t *testing.T) {
	a, _ := pair(t)
	id, err := a.Addrs()[0].ValueForProtocol(ma.P_P2P)
	if err != nil || id != a.ID().String() {
		t.Fatalf("%v: %v", a.Addrs(), err)
	}
}

func TestRedialRightAfterFailedDial(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, list, func(c *p2p.Config) { c.DialTimeout = 2 * time.Second })
	// A port nobody listens on yet; the peer comes up there after the
	// first dial failed.
	addr := tu.LoopbackAddr(t)

	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: addr, ID: 1}
	if st := tu.Next[p2p.Status](t, a.Receiver()); st.Reason != p2p.ReasonDialFailed {
		t.Fatalf("status %+v", st)
	}
	tu.Node(t, ib, list, func(c *p2p.Config) { c.ListenAddrs = []ma.Multiaddr{addr} })
	// go-libp2p would refuse to redial that address for seconds (dial
	// backoff); the caller's immediate retry must go through.
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: addr, ID: 2}
	if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
		t.Fatalf("retry: %+v", st)
	}
}

func TestSendAfterDisconnectRedialsKnownAddress(t *testing.T) {
	a, b := pair(t)
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1}
	tu.Next[p2p.Status](t, a.Receiver())
	a.Sender() <- p2p.DisconnectFrom{Peer: b.ID()}
	tu.Next[p2p.Disconnected](t, a.Receiver())
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), ID: 2, Data: []byte("again")}
	if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
		t.Fatalf("%+v", st)
	}
}
