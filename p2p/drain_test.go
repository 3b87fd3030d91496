package p2p_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/bitvmx/go-bitvmx-p2p/internal/bench"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// How DisconnectFrom ends a peer's connections (docs/PROTOCOL.md §5,
// p2p/drain.go). Each test makes the drain's wait for the peer far longer
// than the test's own deadlines, so that an outcome cannot come from the
// wait running out.

// sendData writes a Data frame on s and reads its ack, which must be OK.
func sendData(t *testing.T, s network.Stream, br *bufio.Reader, id uint64, payload string) {
	t.Helper()
	if _, err := protodelim.MarshalTo(s, data(&pb.Data{Id: id, Payload: []byte(payload)})); err != nil {
		t.Fatal(err)
	}
	if ack := readAck(t, br); ack.Id != id || ack.Reason != pb.Reason_OK {
		t.Fatalf("ack %v", ack)
	}
}

// readEOF reads br, s's reader, to the end of the node's half of the
// stream; nothing but acks may come before it.
func readEOF(t *testing.T, s network.Stream, br *bufio.Reader) {
	t.Helper()
	if err := s.SetReadDeadline(time.Now().Add(tu.Timeout)); err != nil {
		t.Fatal(err)
	}
	for {
		var f pb.Frame
		err := protodelim.UnmarshalFrom(br, &f)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("read to the end: %v", err)
		}
		if f.GetAck() == nil {
			t.Fatalf("read to the end: got %v", &f)
		}
	}
}

// §5: while the node drains a connection, waiting for the peer to close
// its half, a connection the same peer opens is a new one: its streams are
// served, and it stays open when the old one closes. (A peer that saw the
// old connection go dials again at once, often before the node's close has
// returned; resetting its stream would fail its next message.)
func TestDisconnectServesTheNextConnection(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), p2p.WithDrainWait(10*tu.Timeout))
	oldHost := tu.RawHost(t, ia.Key, "127.0.0.1")
	old := openStream(t, oldHost, b)
	oldBr := bufio.NewReader(old)
	gone := make(chan struct{})
	oldHost.Network().Notify(&network.NotifyBundle{DisconnectedF: func(_ network.Network, c network.Conn) {
		if c.ID() == old.Conn().ID() {
			close(gone)
		}
	}})
	// The node owes the ack of this message when the drain begins, so it
	// waits for the peer's end of the stream, which does not come yet.
	sendData(t, old, oldBr, 1, "before")
	tu.Next[p2p.Data](t, b.Receiver())
	b.Sender() <- p2p.DisconnectFrom{Peer: ia.ID}
	readEOF(t, old, oldBr)

	next := openStream(t, tu.RawHost(t, ia.Key, "127.0.0.1"), b)
	nextBr := bufio.NewReader(next)
	sendData(t, next, nextBr, 1, "during")
	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "during" {
		t.Fatalf("delivered %q", d.Bytes)
	}
	if old.Conn().IsClosed() {
		t.Fatal("the old connection closed before the peer ended its half")
	}

	// The peer ends its half: the drain is over, the old connection goes,
	// the new one stays.
	if err := old.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
	case <-time.After(tu.Timeout):
		t.Fatal("the old connection stayed open after the drain")
	}
	sendData(t, next, nextBr, 2, "after")
	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "after" {
		t.Fatalf("delivered %q", d.Bytes)
	}
	if keys := b.Limiter().Stats().Peers.Keys; keys != 0 {
		t.Fatalf("%d peers charged", keys)
	}
}

// §5: a stream on which the peer has read everything the node wrote (its
// last write was a message the peer acked) owes nothing and expects
// nothing: DisconnectFrom closes it at once, without waiting for a peer
// that never ends its half.
func TestDisconnectWaitsForNothingWhenNothingIsOwed(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), p2p.WithDrainWait(10*tu.Timeout))
	raw := tu.RawHost(t, ia.Key, "127.0.0.1")
	stop := make(chan struct{})
	defer close(stop)
	raw.SetStreamHandler(p2p.ProtocolID, func(s network.Stream) {
		// Acks the node's message, then holds its half open until the
		// test ends.
		br := bufio.NewReader(s)
		var f pb.Frame
		if err := protodelim.UnmarshalFrom(br, &f); err != nil || f.GetData() == nil {
			s.Reset()
			return
		}
		if _, err := protodelim.MarshalTo(s, pb.AckFrame(&pb.Ack{Id: f.GetData().Id})); err != nil {
			return
		}
		<-stop
		s.Reset()
	})
	b.Sender() <- p2p.SendMsg{Peer: ia.ID, Addr: raw.Addrs()[0], ID: 1, Data: []byte("q")}
	if st := tu.Next[p2p.Status](t, b.Receiver()); !st.OK {
		t.Fatalf("status %+v", st)
	}
	b.Sender() <- p2p.DisconnectFrom{Peer: ia.ID}
	tu.Next[p2p.Disconnected](t, b.Receiver())
}

// openStream connects raw to n and opens a message stream.
func openStream(t *testing.T, raw host.Host, n *p2p.Node) network.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := raw.Connect(ctx, tu.AddrInfo(n)); err != nil {
		t.Fatal(err)
	}
	s, err := raw.NewStream(ctx, n.ID(), p2p.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// §4.1: an end that reads the other's end of the stream writes the acks it
// owes, a held lazy one included, and closes its own half at once: the
// other end may be waiting for that to close the connection.
func TestEndOfStreamAnsweredWithAcksThenEnd(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) { c.AckDelay = p2p.MaxAckDelay })
	s := openStream(t, tu.RawHost(t, ia.Key, "127.0.0.1"), b)
	if _, err := protodelim.MarshalTo(s, data(&pb.Data{Id: 1, Payload: []byte("q"), LazyAck: true})); err != nil {
		t.Fatal(err)
	}
	tu.Next[p2p.Data](t, b.Receiver())
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(s)
	if ack := readAck(t, br); ack.Id != 1 || ack.Reason != pb.Reason_OK {
		t.Fatalf("ack %v", ack)
	}
	readEOF(t, s, br)
}

// A DisconnectFrom drains the stream a message of ours went on, and waits
// (drainWait) for the peer's ack of it (drain.go, step 4). On a stream
// just opened, whose proposal the peer has not answered yet, the drain's
// read deadline in the past failed go-multistream's read of the answer,
// which keeps that error for good: the drain's reads then failed at once,
// and the message, which the peer had delivered and acked, was reported
// connection_lost. A 150 ms delay each way puts the drain between the
// peer's delivery and its answer's arrival.
func TestDrainBeforeProposalAnswered(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, list, p2p.WithDrainWait(tu.Timeout/2))
	b := tu.Node(t, ib, list)
	tcp, err := manet.ToNetAddr(b.Addrs()[0].Decapsulate(ma.StringCast("/p2p/" + ib.ID.String())))
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := bench.NewDelayProxy(tcp.String(), 150*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	via, err := manet.FromNetAddr(proxy.Addr())
	if err != nil {
		t.Fatal(err)
	}

	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: via, ID: 1, Data: []byte("m1")}
	tu.Next[p2p.Data](t, b.Receiver()) // delivered: its ack is on its way
	a.Sender() <- p2p.DisconnectFrom{Peer: ib.ID}
	if st := nextOf(t, a, statusOf(1)); !st.OK {
		t.Fatalf("m1, delivered and acked by the peer during the drain: %+v (err %v)", st, st.Err)
	}
}
