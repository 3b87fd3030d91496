package p2p_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protodelim"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// readFrame reads the next frame a raw host gets.
func readFrame(t *testing.T, br *bufio.Reader) *pb.Frame {
	t.Helper()
	var f pb.Frame
	if err := protodelim.UnmarshalFrom(br, &f); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return &f
}

// A lazy ack is held for the receiver's ack delay when nothing carries it.
func TestLazyAckHeldForTheDelay(t *testing.T) {
	const delay = 80 * time.Millisecond
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) { c.AckDelay = delay })
	s := rawStream(t, ia, b, "127.0.0.1")
	br := bufio.NewReader(s)

	sent := time.Now()
	if _, err := protodelim.MarshalTo(s, data(&pb.Data{Id: 1, Payload: []byte("q"), LazyAck: true})); err != nil {
		t.Fatal(err)
	}
	if ack := readAck(t, br); ack.Id != 1 || ack.Reason != pb.Reason_OK {
		t.Fatalf("ack %v", ack)
	}
	if held := time.Since(sent); held < delay {
		t.Fatalf("lazy ack came after %s, before the %s delay", held, delay)
	}
	tu.Next[p2p.Data](t, b.Receiver())
}

// The receiver's answer carries the ack it held: the ack arrives first, in
// the answer's write, on the stream the sender opened (the raw host serves
// no protocol, so the node has nowhere else to write). The answer is sent
// the moment the message is delivered, many times over: it must never
// overtake the ack, however soon it comes.
func TestReplyCarriesTheLazyAck(t *testing.T) {
	const rounds = 200
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) { c.AckDelay = p2p.MaxAckDelay })
	s := rawStream(t, ia, b, "127.0.0.1")
	br := bufio.NewReader(s)
	statuses := make(chan p2p.Status, rounds)
	go func() {
		var id uint64
		for ev := range b.Receiver() {
			switch ev := ev.(type) {
			case p2p.Data:
				id++
				_ = b.Send(context.Background(), p2p.SendMsg{Peer: ev.From, ID: id, Data: []byte("pong")})
			case p2p.Status:
				statuses <- ev
			}
		}
	}()

	for i := uint64(1); i <= rounds; i++ {
		if _, err := protodelim.MarshalTo(s, data(&pb.Data{Id: i, Payload: []byte("ping"), LazyAck: true})); err != nil {
			t.Fatal(err)
		}
		// Had the ack waited for its timer, the reply would come first.
		if ack := readFrame(t, br).GetAck(); ack == nil || ack.Id != i || ack.Reason != pb.Reason_OK {
			t.Fatalf("round %d: first frame is not the ack of the request: %v", i, ack)
		}
		reply := readFrame(t, br).GetData()
		if reply == nil || string(reply.Payload) != "pong" || reply.Id != i {
			t.Fatalf("round %d: second frame is not the reply: %v", i, reply)
		}
		if _, err := protodelim.MarshalTo(s, pb.AckFrame(&pb.Ack{Id: reply.Id})); err != nil {
			t.Fatal(err)
		}
		if st := tu.Next[p2p.Status](t, statuses); !st.OK || st.MsgID != i {
			t.Fatalf("round %d: reply status %+v", i, st)
		}
	}
}

// messageStreams counts the message streams between n and p.
func messageStreams(n *p2p.Node, p peer.ID) int {
	count := 0
	for _, c := range n.Host().Network().ConnsToPeer(p) {
		for _, s := range c.GetStreams() {
			if s.Protocol() == p2p.ProtocolID {
				count++
			}
		}
	}
	return count
}

// Both ends push more than a flow-control window at each other on one
// stream at once. Each end's writer then waits for the other to read; the
// readers must keep reading (their acks queue meanwhile), or both stall
// until the timeouts fail every message.
func TestBothEndsFloodOneStream(t *testing.T) {
	const n, size = 12, 512 << 10
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	slow := func(c *p2p.Config) { c.AckTimeout, c.WriteTimeout = time.Minute, time.Minute }
	a, b := tu.Node(t, ia, list, slow), tu.Node(t, ib, list, slow)

	// b answers on the stream a opens.
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: b.Addrs()[0], ID: 1000, Data: []byte("hello")}
	tu.Next[p2p.Data](t, b.Receiver())
	if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
		t.Fatalf("hello: %+v", st)
	}

	payload := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, size) }
	var wg sync.WaitGroup
	for _, end := range []struct {
		from, to *p2p.Node
		peer     peer.ID
	}{{a, b, ib.ID}, {b, a, ia.ID}} {
		wg.Go(func() {
			for i := range n {
				end.from.Sender() <- p2p.SendMsg{Peer: end.peer, ID: uint64(i + 1), Data: payload(i)}
			}
		})
	}
	wg.Wait()
	for _, nd := range []*p2p.Node{a, b} {
		got, ok := 0, 0
		for got < n || ok < n {
			select {
			case ev := <-nd.Receiver():
				switch ev := ev.(type) {
				case p2p.Data:
					if !bytes.Equal(ev.Bytes, payload(got)) {
						t.Fatalf("message %d out of order or damaged", got)
					}
					got++
				case p2p.Status:
					if !ev.OK {
						t.Fatalf("status %+v", ev)
					}
					ok++
				}
			case <-time.After(tu.Timeout):
				t.Fatalf("%d of %d messages and %d of %d acks", got, n, ok, n)
			}
		}
	}
	if sa, sb := messageStreams(a, ib.ID), messageStreams(b, ia.ID); sa != 1 || sb != 1 {
		t.Fatalf("message streams: %d and %d, want one shared", sa, sb)
	}
}

// Send writes from the caller's goroutine when it can and through the node
// loop when it cannot (here a small in-flight limit forces both): the
// messages still arrive in the order they were given.
func TestSendKeepsOrderAcrossPaths(t *testing.T) {
	const n = 400
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, list, func(c *p2p.Config) { c.MaxInFlight = 3 })
	b := tu.Node(t, ib, list)
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	dst := b.Addrs()[0]
	for i := range n {
		if err := a.Send(ctx, p2p.SendMsg{Peer: ib.ID, Addr: dst, ID: uint64(i + 1), Data: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, d.Bytes)
		}
	}
	for i := range n {
		if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK || st.MsgID != uint64(i+1) {
			t.Fatalf("status %d: %+v", i, st)
		}
	}
}

// Two nodes that start sending to each other at the same moment may open a
// stream each; every message still arrives once, in order, and is acked.
func TestBothEndsOpenAtOnce(t *testing.T) {
	const n = 50
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a, b := tu.Node(t, ia, list), tu.Node(t, ib, list)
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := a.Host().Connect(ctx, tu.AddrInfo(b)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, end := range []struct {
		from *p2p.Node
		peer peer.ID
	}{{a, ib.ID}, {b, ia.ID}} {
		wg.Go(func() {
			for i := range n {
				end.from.Sender() <- p2p.SendMsg{Peer: end.peer, ID: uint64(i + 1), Data: []byte{byte(i)}}
			}
		})
	}
	wg.Wait()
	for _, nd := range []*p2p.Node{a, b} {
		got, ok := 0, 0
		for got < n || ok < n {
			switch ev := tu.Next[p2p.Event](t, nd.Receiver()).(type) {
			case p2p.Data:
				if ev.Bytes[0] != byte(got) {
					t.Fatalf("message %d is %d", got, ev.Bytes[0])
				}
				got++
			case p2p.Status:
				if !ev.OK {
					t.Fatalf("status %+v", ev)
				}
				ok++
			}
		}
	}
}

// A node's messages on a stream the peer opened get their Status when the
// node closes, before its Receiver does.
func TestCloseSettlesMessagesOnThePeersStream(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib))
	s := rawStream(t, ia, b, "127.0.0.1")
	br := bufio.NewReader(s)
	if _, err := protodelim.MarshalTo(s, data(&pb.Data{Id: 1, Payload: []byte("hi")})); err != nil {
		t.Fatal(err)
	}
	readAck(t, br)
	tu.Next[p2p.Data](t, b.Receiver())

	b.Sender() <- p2p.SendMsg{Peer: ia.ID, ID: 5, Data: []byte("never acked")}
	if d := readFrame(t, br).GetData(); d == nil || string(d.Payload) != "never acked" {
		t.Fatalf("frame %v", d)
	}
	b.Close()
	st := tu.Next[p2p.Status](t, b.Receiver())
	if st.MsgID != 5 || st.Reason != p2p.ReasonClosed {
		t.Fatalf("status %+v", st)
	}
}

// A peer that stops reading while it keeps sending: our writer is stuck on
// its window holding the stream, so acks queue; past the cap the reader
// stops reading the peer too, instead of queueing without bound.
func TestAckQueueIsBounded(t *testing.T) {
	const flood = 6000
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) {
		c.ReceiverBuffer = 2 * flood
		c.WriteTimeout, c.AckTimeout = time.Minute, time.Minute
		// The in-flight limit on receipt would refuse the flood past 64
		// (TestInFlightLimitOnReceipt); this is about the acks queued.
		c.MaxInFlight = 2 * flood
	})
	s := rawStream(t, ia, b, "127.0.0.1")
	br := bufio.NewReaderSize(s, 16)
	if _, err := protodelim.MarshalTo(s, data(&pb.Data{Id: 1, Payload: []byte("hi")})); err != nil {
		t.Fatal(err)
	}
	readAck(t, br)
	tu.Next[p2p.Data](t, b.Receiver())

	// b writes a message larger than the stream's window on the raw host's
	// stream; once its first byte is here, b's writer holds the stream
	// until the raw host reads, which it never does again.
	b.Sender() <- p2p.SendMsg{Peer: ia.ID, ID: 1, Data: make([]byte, 1<<20)}
	if _, err := br.Peek(1); err != nil {
		t.Fatal(err)
	}
	var burst bytes.Buffer
	for i := range flood {
		protodelim.MarshalTo(&burst, data(&pb.Data{Id: uint64(i + 2), Payload: []byte{1}}))
	}
	go s.Write(burst.Bytes())
	for range 4096 {
		tu.Next[p2p.Data](t, b.Receiver())
	}
	tu.None[p2p.Data](t, b.Receiver(), 300*time.Millisecond)
}
