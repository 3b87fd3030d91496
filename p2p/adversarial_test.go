package p2p_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// silentHandler reads frames and never acks; it signals the first Data
// frame read. The raw host writes no Data, so the node has nothing to ack.
func silentHandler(got chan<- struct{}) network.StreamHandler {
	return func(s network.Stream) {
		_ = readData(s, func(*pb.Data) error {
			select {
			case got <- struct{}{}:
			default:
			}
			return nil
		})
	}
}

func TestAckTimeout(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, list, func(c *p2p.Config) { c.AckTimeout = 300 * time.Millisecond })
	raw := tu.RawHost(t, ib.Key, "127.0.0.1")
	raw.SetStreamHandler(p2p.ProtocolID, silentHandler(make(chan struct{}, 1)))

	for i := uint64(1); i <= 3; i++ {
		a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: raw.Addrs()[0], ID: i, Data: []byte("x")}
	}
	for i := uint64(1); i <= 3; i++ {
		st := tu.Next[p2p.Status](t, a.Receiver())
		if st.OK || st.Reason != p2p.ReasonAckTimeout {
			t.Fatalf("status %+v", st)
		}
	}
}

// rawStream connects a raw host with key id to n and opens a message stream.
func rawStream(t *testing.T, id tu.Identity, n *p2p.Node, ip string) network.Stream {
	t.Helper()
	raw := tu.RawHost(t, id.Key, ip)
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

// readAck reads the next frame, which must be an Ack: the raw hosts here
// never get a message from the node, so a Data frame is a failure.
func readAck(t *testing.T, r *bufio.Reader) *pb.Ack {
	t.Helper()
	var f pb.Frame
	if err := protodelim.UnmarshalFrom(r, &f); err != nil {
		t.Fatalf("read ack: %v", err)
	}
	if f.GetAck() == nil {
		t.Fatalf("read ack: got %v", &f)
	}
	return f.GetAck()
}

// data is a Data frame, to write on the wire with protodelim.
func data(d *pb.Data) *pb.Frame { return pb.DataFrame(d) }

func TestIndependentImplementationInterop(t *testing.T) {
	// A bare go-libp2p host speaking the protocol from its schema alone.
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib))
	s := rawStream(t, ia, b, "127.0.0.1")
	br := bufio.NewReader(s)
	for i := uint64(1); i <= 3; i++ {
		if _, err := protodelim.MarshalTo(s, data(&pb.Data{Id: i * 10, Payload: []byte{byte(i)}})); err != nil {
			t.Fatal(err)
		}
	}
	for i := uint64(1); i <= 3; i++ {
		if ack := readAck(t, br); ack.Id != i*10 || ack.Reason != pb.Reason_OK {
			t.Fatalf("ack %v", ack)
		}
		if d := tu.Next[p2p.Data](t, b.Receiver()); d.From != ia.ID || d.Bytes[0] != byte(i) {
			t.Fatalf("data %+v", d)
		}
	}
}

// TestMalformedFramesRejected: every unreadable frame of docs/PROTOCOL.md
// §4.2-4.4 gets one id-0 ack, MALFORMED or TOO_LARGE, and the stream ends.
func TestMalformedFramesRejected(t *testing.T) {
	cases := map[string][]byte{
		"not protobuf":         {0x05, 0xff, 0xff, 0xff, 0xff, 0xff},
		"id zero":              mustDelimited(t, data(&pb.Data{Payload: []byte("x")})),
		"neither data nor ack": mustDelimited(t, &pb.Frame{}),
		"oversized prefix":     {0xff, 0xff, 0xff, 0xff, 0x0f},
		// §4.3: a Frame carries one body field, once.
		"both data and ack": {0x06, 0x0a, 0x02, 0x08, 0x01, 0x12, 0x00},
		"data twice":        {0x08, 0x0a, 0x02, 0x08, 0x01, 0x0a, 0x02, 0x08, 0x02},
		// §4.2: a length prefix is a varint of at most 10 bytes.
		"prefix of 11 bytes":                 {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},
		"prefix past 64 bits":                {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
		"prefix of 10 bytes, over the limit": {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
	want := map[string]pb.Reason{
		"not protobuf":                       pb.Reason_MALFORMED,
		"id zero":                            pb.Reason_MALFORMED,
		"neither data nor ack":               pb.Reason_MALFORMED,
		"oversized prefix":                   pb.Reason_TOO_LARGE,
		"both data and ack":                  pb.Reason_MALFORMED,
		"data twice":                         pb.Reason_MALFORMED,
		"prefix of 11 bytes":                 pb.Reason_MALFORMED,
		"prefix past 64 bits":                pb.Reason_MALFORMED,
		"prefix of 10 bytes, over the limit": pb.Reason_TOO_LARGE,
	}
	for name, frame := range cases {
		t.Run(name, func(t *testing.T) {
			ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
			b := tu.Node(t, ib, tu.Allowlist(t, ia, ib))
			s := rawStream(t, ia, b, "127.0.0.1")
			if _, err := s.Write(frame); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(s)
			if ack := readAck(t, br); ack.Id != 0 || ack.Reason != want[name] {
				t.Fatalf("ack %v", ack)
			}
			// The receiver ends the stream after an unreadable frame.
			if rest, _ := io.ReadAll(br); len(rest) != 0 {
				t.Fatalf("more after the final ack: %x", rest)
			}
			tu.None[p2p.Data](t, b.Receiver(), 100*time.Millisecond)
		})
	}
}

func mustDelimited(t *testing.T, f *pb.Frame) []byte {
	var buf []byte
	w := &sliceWriter{&buf}
	if _, err := protodelim.MarshalTo(w, f); err != nil {
		t.Fatal(err)
	}
	return buf
}

type sliceWriter struct{ b *[]byte }

func (w *sliceWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

func TestStrangerCannotDeliverOrBeDialed(t *testing.T) {
	ia, ib, stranger := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	b := tu.Node(t, ib, list)

	// Inbound: the stranger's raw host completes Noise, then gets cut off;
	// whatever Connect says, nothing may be delivered.
	raw := tu.RawHost(t, stranger.Key, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	_ = raw.Connect(ctx, tu.AddrInfo(b))
	if s, err := raw.NewStream(ctx, b.ID(), p2p.ProtocolID); err == nil {
		protodelim.MarshalTo(s, data(&pb.Data{Id: 1, Payload: []byte("let me in")}))
		s.Close()
	}
	tu.None[p2p.Data](t, b.Receiver(), 300*time.Millisecond)

	// Outbound: a node never dials a stranger, even given its address.
	s := tu.Node(t, stranger, tu.Allowlist(t, stranger, ib))
	b.Sender() <- p2p.SendMsg{Peer: stranger.ID, Addr: s.Addrs()[0], ID: 1}
	if st := tu.Next[p2p.Status](t, b.Receiver()); st.Reason != p2p.ReasonRejected {
		t.Fatalf("status %+v", st)
	}
	b.Sender() <- p2p.Dial{Peer: stranger.ID, Addr: s.Addrs()[0]}
	if e := tu.Next[p2p.Error](t, b.Receiver()); e.Peer != stranger.ID {
		t.Fatalf("error %+v", e)
	}
	tu.None[p2p.Connected](t, s.Receiver(), 100*time.Millisecond)
}

func TestIPBinding(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	bound := allowlist.Entry{ID: ia.ID, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}
	list, err := allowlist.New(bound, allowlist.Entry{ID: ib.ID})
	if err != nil {
		t.Fatal(err)
	}
	b := tu.Node(t, ib, list)

	// From the wrong IP: refused, nothing delivered.
	wrong := tu.Node(t, ia, list, tu.Listen("127.0.0.3"))
	wrong.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: []byte("spoof")}
	if st := tu.Next[p2p.Status](t, wrong.Receiver()); st.OK {
		t.Fatalf("from 127.0.0.3: %+v", st)
	}
	tu.None[p2p.Data](t, b.Receiver(), 100*time.Millisecond)
	wrong.Close()

	// From the bound IP: accepted.
	right := tu.Node(t, ia, list, tu.Listen("127.0.0.2"))
	right.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 2, Data: []byte("ok")}
	if st := tu.Next[p2p.Status](t, right.Receiver()); !st.OK {
		t.Fatalf("from 127.0.0.2: %+v", st)
	}
	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "ok" || d.From != ia.ID {
		t.Fatalf("data %+v", d)
	}
}

func TestRemovedPeerDisconnectedAtOnce(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	listB := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, tu.Allowlist(t, ia, ib))
	b := tu.Node(t, ib, listB)
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: []byte("before")}
	tu.Next[p2p.Data](t, b.Receiver())

	listB.Remove(ia.ID)
	if d := tu.Next[p2p.Disconnected](t, b.Receiver()); d.Peer != ia.ID {
		t.Fatalf("%+v", d)
	}
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 2, Data: []byte("after")}
	if st := tu.NextMatch(t, a.Receiver(), func(s p2p.Status) bool { return s.MsgID == 2 }); st.OK {
		t.Fatalf("delivered after removal: %+v", st)
	}
	tu.None[p2p.Data](t, b.Receiver(), 100*time.Millisecond)
}

var _ = peer.ID("")

func TestRevokedPeerFramesInFlightNotDelivered(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	b := tu.Node(t, ib, list)
	s := rawStream(t, ia, b, "127.0.0.1")
	br := bufio.NewReader(s)
	protodelim.MarshalTo(s, data(&pb.Data{Id: 1, Payload: []byte("before")}))
	if ack := readAck(t, br); ack.Reason != pb.Reason_OK {
		t.Fatalf("ack %v", ack)
	}
	tu.Next[p2p.Data](t, b.Receiver())

	list.Remove(ia.ID)
	// Written on the open stream after the revocation, racing the close.
	protodelim.MarshalTo(s, data(&pb.Data{Id: 2, Payload: []byte("after")}))
	var f pb.Frame
	if err := protodelim.UnmarshalFrom(br, &f); err == nil && f.GetAck().GetReason() != pb.Reason_NOT_ALLOWLISTED {
		t.Fatalf("frame after revocation answered %v", &f)
	}
	tu.None[p2p.Data](t, b.Receiver(), 200*time.Millisecond)
}

func TestConnectionLostMidFlight(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	a := tu.Node(t, ia, tu.Allowlist(t, ia, ib), func(c *p2p.Config) { c.AckTimeout = time.Minute })
	raw := tu.RawHost(t, ib.Key, "127.0.0.1")
	// Reads one frame, then resets the stream without acking it.
	raw.SetStreamHandler(p2p.ProtocolID, func(s network.Stream) {
		var f pb.Frame
		protodelim.UnmarshalFrom(bufio.NewReader(s), &f)
		s.Reset()
	})
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: raw.Addrs()[0], ID: 1, Data: []byte("x")}
	if st := tu.Next[p2p.Status](t, a.Receiver()); st.OK || st.Reason != p2p.ReasonConnectionLost || st.MsgID != 1 {
		t.Fatalf("status %+v", st)
	}
}

func TestQueueFullAndEveryMessageAnswered(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	a := tu.Node(t, ia, tu.Allowlist(t, ia, ib), func(c *p2p.Config) {
		c.MaxInFlight, c.SendQueue, c.AckTimeout = 1, 1, 2*time.Second
	})
	raw := tu.RawHost(t, ib.Key, "127.0.0.1")
	raw.SetStreamHandler(p2p.ProtocolID, silentHandler(make(chan struct{}, 1)))
	// One in flight, at most one waiting for its slot and one in the queue:
	// of four messages sent at once at least one finds the queue full.
	const n = 4
	for i := uint64(1); i <= n; i++ {
		a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: raw.Addrs()[0], ID: i, Data: []byte("x")}
	}
	seen := map[uint64]p2p.Reason{}
	for len(seen) < n {
		st := tu.Next[p2p.Status](t, a.Receiver())
		if _, dup := seen[st.MsgID]; dup {
			t.Fatalf("second status for %d: %+v", st.MsgID, st)
		}
		seen[st.MsgID] = st.Reason
	}
	full := 0
	for _, r := range seen {
		switch r {
		case p2p.ReasonQueueFull:
			full++
		case p2p.ReasonAckTimeout:
		default:
			t.Fatalf("unexpected reason %s in %v", r, seen)
		}
	}
	if full == 0 {
		t.Fatalf("no queue_full: %v", seen)
	}
}

func TestAddedPeerConnectsAtOnce(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	listB := tu.Allowlist(t, ib)
	b := tu.Node(t, ib, listB)
	a := tu.Node(t, ia, tu.Allowlist(t, ia, ib))

	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: []byte("not yet")}
	if st := tu.Next[p2p.Status](t, a.Receiver()); st.OK {
		t.Fatalf("delivered before being allowlisted: %+v", st)
	}
	if err := listB.Add(allowlist.Entry{ID: ia.ID, Name: "new operator"}); err != nil {
		t.Fatal(err)
	}
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 2, Data: []byte("now")}
	if st := tu.NextMatch(t, a.Receiver(), func(s p2p.Status) bool { return s.MsgID == 2 }); !st.OK {
		t.Fatalf("after Add: %+v", st)
	}
	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "now" {
		t.Fatalf("delivered %q", d.Bytes)
	}
}

// Charge is how layers above the node (the membership protocol) report a
// peer's misbehaviour: the spend that empties its budget cuts it off, as
// the node's own checks do.
func TestChargeCutsOffAtExhaustion(t *testing.T) {
	a, b := pair(t, func(c *p2p.Config) { c.RateLimit = ratelimit.Config{Burst: 2} })
	a.Sender() <- p2p.Dial{Peer: b.ID(), Addr: b.Addrs()[0]}
	tu.Next[p2p.Connected](t, b.Receiver())
	for i := 0; i < 3; i++ {
		b.Charge(a.ID(), ratelimit.ProtocolViolation)
	}
	ev := tu.Next[p2p.ConnectionLimit](t, b.Receiver())
	if ev.Peer != a.ID() || ev.Reason != ratelimit.ProtocolViolation {
		t.Fatalf("limit %+v", ev)
	}
	if d := tu.Next[p2p.Disconnected](t, b.Receiver()); d.Peer != a.ID() {
		t.Fatalf("disconnected %+v", d)
	}
	if !b.Limiter().PeerBanned(string(a.ID())) {
		t.Fatal("charged peer not banned")
	}
}

// An allowlisted peer must not be able to crash the node. Here it stops
// reading the node's stream while the node writes a large message to it
// (m2), acks m1, and sends enough Data frames to fill the node's queue of
// acks (maxQueuedAcks, 4096): the stream's reader then waits for the
// write lock, with the peer's next frames, ack(2) among them, already in
// its buffer. The writer's timeout ends the stream (pending emptied, head
// left at 1), and the reader, going on with its buffer, met ack(2) with
// st.pending[st.head] out of range: a panic, which kills the process.
func TestAckAfterStreamEndedByWriter(t *testing.T) {
	const maxQueuedAcks = 4096 // stream.go
	ia, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ir)
	a := tu.Node(t, ia, list, func(c *p2p.Config) { c.WriteTimeout = 2 * time.Second })
	raw := tu.RawHost(t, ir.Key, "127.0.0.1")
	type got struct {
		s  network.Stream
		br *bufio.Reader
	}
	m1 := make(chan got, 1)
	raw.SetStreamHandler(p2p.ProtocolID, func(s network.Stream) {
		br := bufio.NewReaderSize(s, 64)
		var f pb.Frame
		if err := protodelim.UnmarshalFrom(br, &f); err != nil || f.GetData().GetId() != 1 {
			t.Errorf("first frame %v, %v", &f, err)
			s.Reset()
			return
		}
		m1 <- got{s, br}
	})

	a.Sender() <- p2p.SendMsg{Peer: ir.ID, Addr: raw.Addrs()[0], ID: 1, Data: []byte("m1")}
	var g got
	select {
	case g = <-m1:
	case <-time.After(tu.Timeout):
		t.Fatal("m1 did not arrive")
	}
	// m2 is larger than the stream's window (256 KiB): with the peer not
	// reading, its writer holds the write lock until WriteTimeout.
	a.Sender() <- p2p.SendMsg{Peer: ir.ID, ID: 2, Data: bytes.Repeat([]byte{1}, 600<<10)}
	// Its first bytes here: the writer is in its write.
	_ = g.s.SetReadDeadline(time.Now().Add(tu.Timeout))
	if _, err := g.br.Peek(1); err != nil {
		t.Fatalf("m2 did not start: %v", err)
	}

	var batch []byte
	batch = append(batch, delimited(pb.AckFrame(&pb.Ack{Id: 1}))...)
	for id := uint64(1); id <= maxQueuedAcks; id++ {
		batch = append(batch, delimited(pb.DataFrame(&pb.Data{Id: id, Payload: []byte("x")}))...)
	}
	batch = append(batch, delimited(pb.AckFrame(&pb.Ack{Id: 2}))...)
	if _, err := g.s.Write(batch); err != nil {
		t.Fatal(err)
	}
	if st := nextOf(t, a, statusOf(1)); !st.OK {
		t.Fatalf("m1: %+v", st)
	}
	st := nextOf(t, a, statusOf(2))
	t.Logf("m2: %s %v", st.Reason, st.Err)
	// The node is still up: a further message gets its Status.
	raw.SetStreamHandler(p2p.ProtocolID, func(s network.Stream) { _ = readData(s, ackEach(s)) })
	a.Sender() <- p2p.SendMsg{Peer: ir.ID, ID: 3, Data: []byte("m3")}
	if st := nextOf(t, a, statusOf(3)); !st.OK {
		t.Fatalf("m3: %+v", st)
	}
}
