package p2p_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// Conformance tests: each pins down one edge of docs/PROTOCOL.md that an
// independent implementation relies on, from a raw go-libp2p host that
// shares nothing with the node but the schema. The section each one checks
// is named in its comment.

// rawAcker serves the message protocol on a raw host: it reads the node's
// Data frames and answers each as answer says (nil: OK), on whichever
// stream they came. It counts the streams it served and remembers their
// connections.
type rawAcker struct {
	host    host.Host
	answer  func(stream int, d *pb.Data) []byte // the bytes to write back, nil for an OK ack
	streams atomic.Int32
	mu      sync.Mutex
	conns   []network.Conn
}

func newRawAcker(t *testing.T, id tu.Identity, answer func(stream int, d *pb.Data) []byte) *rawAcker {
	r := &rawAcker{host: tu.RawHost(t, id.Key, "127.0.0.1"), answer: answer}
	r.host.SetStreamHandler(p2p.ProtocolID, r.serve)
	return r
}

func (r *rawAcker) serve(s network.Stream) {
	n := int(r.streams.Add(1))
	r.mu.Lock()
	r.conns = append(r.conns, s.Conn())
	r.mu.Unlock()
	err := readData(s, func(d *pb.Data) error {
		var out []byte
		if r.answer != nil {
			out = r.answer(n, d)
		}
		if out == nil {
			out = delimited(pb.AckFrame(&pb.Ack{Id: d.Id}))
		}
		_, err := s.Write(out)
		return err
	})
	if errors.Is(err, errReadFrame) {
		s.Reset()
	}
}

// errReadFrame marks readData's end at a frame it could not read (the
// stream ended, or was cut), as against one its callback chose.
var errReadFrame = errors.New("reading a frame")

// errStopReading is what a readData callback returns to end the reading.
var errStopReading = errors.New("stop reading")

// readData reads the frames a raw peer gets on s, as a test's stand-in for
// a node, and hands each Data frame to each, until a frame cannot be read
// (an error wrapping errReadFrame) or each returns an error (returned as
// it is).
func readData(s network.Stream, each func(*pb.Data) error) error {
	br := bufio.NewReader(s)
	for {
		var f pb.Frame
		if err := protodelim.UnmarshalFrom(br, &f); err != nil {
			return fmt.Errorf("%w: %w", errReadFrame, err)
		}
		if d := f.GetData(); d != nil {
			if err := each(d); err != nil {
				return err
			}
		}
	}
}

// ackEach acks every Data frame read on s (readData's callback).
func ackEach(s network.Stream) func(*pb.Data) error {
	return func(d *pb.Data) error {
		_, err := s.Write(delimited(pb.AckFrame(&pb.Ack{Id: d.Id})))
		return err
	}
}

func delimited(f proto.Message) []byte {
	b, err := proto.Marshal(f)
	if err != nil {
		panic(err)
	}
	return append(protowire.AppendVarint(nil, uint64(len(b))), b...)
}

// nextOf returns the next event of type T on n's Receiver, failing the test
// if one of the forbidden types comes first.
func nextOf[T p2p.Event](t *testing.T, n *p2p.Node, match func(T) bool, forbid ...func(p2p.Event) bool) T {
	t.Helper()
	deadline := time.NewTimer(tu.Timeout)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-n.Receiver():
			if !ok {
				t.Fatal("receiver closed")
			}
			if e, ok := ev.(T); ok && match(e) {
				return e
			}
			for _, f := range forbid {
				if f(ev) {
					t.Fatalf("unexpected %T: %+v", ev, ev)
				}
			}
		case <-deadline.C:
			var zero T
			t.Fatalf("no %T within %s", zero, tu.Timeout)
		}
	}
}

func isError(ev p2p.Event) bool        { _, ok := ev.(p2p.Error); return ok }
func isDisconnected(ev p2p.Event) bool { _, ok := ev.(p2p.Disconnected); return ok }
func statusOf(id uint64) func(p2p.Status) bool {
	return func(s p2p.Status) bool { return s.MsgID == id }
}

// §4.4, §4.6: a payload over the limit inside a frame the receiver can
// read (its length prefix within the limit plus the 47-byte frame
// allowance) is refused with the frame's own id and TOO_LARGE, one
// oversized_message token, and the stream goes on. A prefix one byte past
// the allowance is refused before the body is read: an id-0 TOO_LARGE, and
// the stream ends.
func TestPayloadOverLimitInReadableFrame(t *testing.T) {
	const limit = 100
	const allowance = 47 // docs/PROTOCOL.md §4.6
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) { c.MaxMessageSize = limit })

	// The largest readable frame: its length is exactly limit + allowance.
	var big []byte
	for n := limit; ; n++ {
		f := pb.DataFrame(&pb.Data{Id: 1, Payload: make([]byte, n)})
		if size := proto.Size(f); size == limit+allowance {
			big = delimited(f)
			break
		} else if size > limit+allowance {
			t.Fatalf("no payload size makes a frame of %d bytes", limit+allowance)
		}
	}
	s := rawStream(t, ia, b, "127.0.0.1")
	br := bufio.NewReader(s)
	if _, err := s.Write(big); err != nil {
		t.Fatal(err)
	}
	if ack := readAck(t, br); ack.Id != 1 || ack.Reason != pb.Reason_TOO_LARGE {
		t.Fatalf("ack %v, want id 1 TOO_LARGE", ack)
	}
	if n := b.Limiter().Stats().Peers.Spent[ratelimit.OversizedMessage]; n != 1 {
		t.Fatalf("%d oversized_message tokens spent, want 1", n)
	}
	// The same stream goes on.
	if _, err := protodelim.MarshalTo(s, data(&pb.Data{Id: 2, Payload: []byte("fits")})); err != nil {
		t.Fatal(err)
	}
	if ack := readAck(t, br); ack.Id != 2 || ack.Reason != pb.Reason_OK {
		t.Fatalf("ack %v after the refusal", ack)
	}
	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "fits" {
		t.Fatalf("delivered %q", d.Bytes)
	}

	// One byte more: the prefix alone is refused, and the stream ends.
	s = rawStream(t, ia, b, "127.0.0.1")
	br = bufio.NewReader(s)
	if _, err := s.Write(protowire.AppendVarint(nil, limit+allowance+1)); err != nil {
		t.Fatal(err)
	}
	if ack := readAck(t, br); ack.Id != 0 || ack.Reason != pb.Reason_TOO_LARGE {
		t.Fatalf("ack %v, want id 0 TOO_LARGE", ack)
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Fatalf("more after the final ack: %x", rest)
	}
}

// §4.4: an ack whose id is not that of the oldest unanswered frame resets
// the stream, not the connection: every frame pending on the stream fails
// with protocol_error, the peer is charged one protocol_violation token,
// and the next message goes on a new stream over the same connection.
func TestWrongAckIDResetsStreamOnly(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	a := tu.Node(t, ia, tu.Allowlist(t, ia, ib))
	raw := newRawAcker(t, ib, func(stream int, d *pb.Data) []byte {
		if stream == 1 && d.Id == 3 {
			// Frames 1 and 2 go unanswered; the first ack names frame 3.
			return delimited(pb.AckFrame(&pb.Ack{Id: 3}))
		}
		if stream == 1 {
			return []byte{} // no ack yet
		}
		return nil
	})
	for i := uint64(1); i <= 3; i++ {
		a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: raw.host.Addrs()[0], ID: i, Data: []byte("x")}
	}
	for i := uint64(1); i <= 3; i++ {
		st := nextOf(t, a, statusOf(i), isDisconnected)
		if st.OK || st.Reason != p2p.ReasonProtocolError {
			t.Fatalf("status %+v, want protocol_error", st)
		}
	}
	if n := a.Limiter().Stats().Peers.Spent[ratelimit.ProtocolViolation]; n != 1 {
		t.Fatalf("%d protocol_violation tokens spent, want 1", n)
	}
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, ID: 4, Data: []byte("again")}
	if st := nextOf(t, a, statusOf(4), isDisconnected); !st.OK {
		t.Fatalf("status %+v after the reset", st)
	}
	raw.mu.Lock()
	defer raw.mu.Unlock()
	if len(raw.conns) != 2 || raw.conns[0] != raw.conns[1] || raw.conns[0].IsClosed() {
		t.Fatalf("streams on %d connections, want two streams on one that stays open", len(raw.conns))
	}
}

// §4.3, §9: an ack reason the node does not know (a newer peer's) is a
// refusal and nothing else: the Status says refused, no Error, no
// disconnection, no token, and the stream goes on.
func TestUnknownAckReasonIsARefusal(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	a := tu.Node(t, ia, tu.Allowlist(t, ia, ib))
	raw := newRawAcker(t, ib, func(_ int, d *pb.Data) []byte {
		if string(d.Payload) == "refuse me" {
			return delimited(pb.AckFrame(&pb.Ack{Id: d.Id, Reason: pb.Reason(99)}))
		}
		return nil
	})
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: raw.host.Addrs()[0], ID: 1, Data: []byte("refuse me")}
	st := nextOf(t, a, statusOf(1), isError, isDisconnected)
	if st.OK || st.Reason != p2p.ReasonRefused {
		t.Fatalf("status %+v, want refused", st)
	}
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, ID: 2, Data: []byte("take me")}
	if st := nextOf(t, a, statusOf(2), isError, isDisconnected); !st.OK {
		t.Fatalf("status %+v", st)
	}
	if n := raw.streams.Load(); n != 1 {
		t.Fatalf("%d streams, want the first one kept", n)
	}
	if keys := a.Limiter().Stats().Peers.Keys; keys != 0 {
		t.Fatalf("%d peers charged", keys)
	}
	tu.None[p2p.Error](t, a.Receiver(), 50*time.Millisecond)
}

// §4.6: the in-flight limit is enforced on receipt. Frames whose acks have
// not gone out count as unanswered, here because their verdicts are pending
// (Config.Accept); a frame beyond MaxInFlight of them is refused
// TOO_MANY_IN_FLIGHT without being judged or delivered, in its place among
// the acks, and not charged. Once the acks are out the stream takes frames
// again.
func TestInFlightLimitOnReceipt(t *testing.T) {
	const limit, sent = 64, 100
	release := make(chan struct{})
	var judged atomic.Int32
	accept := func(d p2p.Data) (p2p.Reason, func() p2p.Reason) {
		if string(d.Bytes) == "hello" {
			return p2p.ReasonOK, nil
		}
		judged.Add(1)
		return "", func() p2p.Reason { <-release; return p2p.ReasonOK }
	}
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) {
		c.Accept, c.MaxInFlight, c.ReceiverBuffer = accept, limit, 2*sent
	})
	s := rawStream(t, ia, b, "127.0.0.1")
	br := bufio.NewReader(s)
	if _, err := s.Write(delimited(data(&pb.Data{Id: 1, Payload: []byte("hello")}))); err != nil {
		t.Fatal(err)
	}
	if ack := readAck(t, br); ack.Id != 1 || ack.Reason != pb.Reason_OK {
		t.Fatalf("ack %v", ack)
	}
	tu.Next[p2p.Data](t, b.Receiver())
	// A message of the node's on this stream, whose ack follows the burst:
	// its Status shows that the node has read the whole burst.
	b.Sender() <- p2p.SendMsg{Peer: ia.ID, ID: 77, Data: []byte("probe")}
	probe := readFrame(t, br).GetData()
	if probe == nil {
		t.Fatal("no probe from the node")
	}
	// Frames 2 to 101, pipelined in one write with no ack read in between.
	var burst []byte
	for i := uint64(2); i <= sent+1; i++ {
		burst = append(burst, delimited(data(&pb.Data{Id: i, Payload: []byte{byte(i)}}))...)
	}
	burst = append(burst, delimited(pb.AckFrame(&pb.Ack{Id: probe.Id}))...)
	if _, err := s.Write(burst); err != nil {
		t.Fatal(err)
	}
	if st := tu.Next[p2p.Status](t, b.Receiver()); st.MsgID != 77 || !st.OK {
		t.Fatalf("probe status %+v", st)
	}
	close(release)
	for i := uint64(2); i <= sent+1; i++ {
		want := pb.Reason_OK
		if i > limit+1 {
			want = pb.Reason_TOO_MANY_IN_FLIGHT
		}
		if ack := readAck(t, br); ack.Id != i || ack.Reason != want {
			t.Fatalf("ack %v, want id %d %v", ack, i, want)
		}
	}
	if n := judged.Load(); n != limit {
		t.Fatalf("%d frames judged, want %d", n, limit)
	}
	for i := 2; i <= limit+1; i++ {
		if d := tu.Next[p2p.Data](t, b.Receiver()); d.Bytes[0] != byte(i) {
			t.Fatalf("delivery of frame %d is frame %d", i, d.Bytes[0])
		}
	}
	tu.None[p2p.Data](t, b.Receiver(), 50*time.Millisecond)
	if keys := b.Limiter().Stats().Peers.Keys; keys != 0 {
		t.Fatalf("%d peers charged", keys)
	}
	// Every ack is out: the stream takes frames again.
	if _, err := s.Write(delimited(data(&pb.Data{Id: sent + 2, Payload: []byte("hello")}))); err != nil {
		t.Fatal(err)
	}
	if ack := readAck(t, br); ack.Id != sent+2 || ack.Reason != pb.Reason_OK {
		t.Fatalf("ack %v", ack)
	}
}

// §4.6: a sender that keeps the in-flight limit is never refused for it,
// however fast it pipelines: the receiver counts an ack answered before its
// bytes can reach the sender.
func TestInFlightLimitNeverRefusesAConformingSender(t *testing.T) {
	const n = 3000
	a, b := pair(t, func(c *p2p.Config) { c.MaxInFlight, c.SendQueue, c.ReceiverBuffer = 4, n, 2*n })
	to, addr := b.ID(), b.Addrs()[0]
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		for i := 1; i <= n; i++ {
			if err := a.Send(ctx, p2p.SendMsg{Peer: to, Addr: addr, ID: uint64(i), Data: []byte{byte(i)}}); err != nil {
				return
			}
		}
	})
	for i := 1; i <= n; i++ {
		if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
			t.Fatalf("status %+v", st)
		}
	}
}

// §1: identify is not required. A peer that does not serve
// /ipfs/id/1.0.0 sends to the node and is sent to.
func TestPeerWithoutIdentify(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib))
	raw := newRawAcker(t, ia, nil)
	raw.host.RemoveStreamHandler(identify.ID)
	raw.host.RemoveStreamHandler(identify.IDPush)
	if slices.Contains(raw.host.Mux().Protocols(), protocol.ID(identify.ID)) {
		t.Fatal("the raw host still serves identify")
	}

	// The node sends first: it dials, and its identify of the peer fails.
	b.Sender() <- p2p.SendMsg{Peer: ia.ID, Addr: raw.host.Addrs()[0], ID: 1, Data: []byte("to you")}
	if st := tu.Next[p2p.Status](t, b.Receiver()); !st.OK {
		t.Fatalf("status %+v", st)
	}
	// And the peer sends on a stream of its own.
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	s, err := raw.host.NewStream(ctx, ib.ID, p2p.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(delimited(data(&pb.Data{Id: 1, Payload: []byte("from me")}))); err != nil {
		t.Fatal(err)
	}
	if ack := readAck(t, bufio.NewReader(s)); ack.Id != 1 || ack.Reason != pb.Reason_OK {
		t.Fatalf("ack %v", ack)
	}
	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "from me" {
		t.Fatalf("delivered %q", d.Bytes)
	}
}

// §4.1, §5: DisconnectFrom writes the acks the node owes before the
// connection closes: a message it delivered is never reported
// connection_lost to its sender because of this close, whether its ack was
// held lazily or waited for Config.Accept's verdict.
func TestDisconnectFlushesOwedAcks(t *testing.T) {
	t.Run("lazy ack held", func(t *testing.T) {
		a, b := pair(t, func(c *p2p.Config) { c.AckDelay = p2p.MaxAckDelay })
		a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: []byte("q"), LazyAck: true}
		tu.Next[p2p.Data](t, b.Receiver())
		// Its ack waits up to 100 ms for an answer to carry it; the close
		// comes first.
		b.Sender() <- p2p.DisconnectFrom{Peer: a.ID()}
		if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
			t.Fatalf("status %+v: the close lost the ack of a delivered message", st)
		}
		tu.Next[p2p.Disconnected](t, b.Receiver())
	})
	t.Run("verdict pending", func(t *testing.T) {
		release, judging := make(chan struct{}), make(chan struct{}, 1)
		accept := func(p2p.Data) (p2p.Reason, func() p2p.Reason) {
			judging <- struct{}{}
			return "", func() p2p.Reason { <-release; return p2p.ReasonOK }
		}
		ia, ib, stranger := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
		list := tu.Allowlist(t, ia, ib)
		a := tu.Node(t, ia, list)
		b := tu.Node(t, ib, list, func(c *p2p.Config) { c.Accept = accept })
		a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: []byte("q")}
		<-judging
		b.Sender() <- p2p.DisconnectFrom{Peer: a.ID()}
		// A command after it, answered with an Error, shows that the node
		// has handled the DisconnectFrom before the verdict comes.
		b.Sender() <- p2p.Dial{Peer: stranger.ID}
		tu.NextMatch(t, b.Receiver(), func(e p2p.Error) bool { return e.Peer == stranger.ID })
		close(release)
		if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
			t.Fatalf("status %+v: the close lost the ack of a delivered message", st)
		}
		tu.Next[p2p.Data](t, b.Receiver())
		tu.Next[p2p.Disconnected](t, b.Receiver())
	})
}

// §5: Close, too, writes the acks the node owes before it hangs up.
func TestCloseFlushesOwedAcks(t *testing.T) {
	a, b := pair(t, func(c *p2p.Config) { c.AckDelay = p2p.MaxAckDelay })
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: []byte("q"), LazyAck: true}
	tu.Next[p2p.Data](t, b.Receiver())
	b.Close()
	if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
		t.Fatalf("status %+v: the close lost the ack of a delivered message", st)
	}
}

// §9: the versioning policy, as a node of this version meets a newer peer.
//
//   - A peer offering /bitvmx/msg/3.0.0 first and this version second gets
//     this version.
//   - Unknown fields, in a Frame, a Data or an Ack, are ignored.
//   - An unknown ack reason is a refusal, nothing more.
func TestVersioningPolicy(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib))
	raw := tu.RawHost(t, ia.Key, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := raw.Connect(ctx, tu.AddrInfo(b)); err != nil {
		t.Fatal(err)
	}
	s, err := raw.NewStream(ctx, ib.ID, "/bitvmx/msg/3.0.0", p2p.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Protocol() != p2p.ProtocolID {
		t.Fatalf("negotiated %s, want %s", s.Protocol(), p2p.ProtocolID)
	}
	br := bufio.NewReader(s)

	// A Data with a field 99 inside a Frame with a field 15.
	var d []byte
	d = protowire.AppendTag(d, 1, protowire.VarintType)
	d = protowire.AppendVarint(d, 1)
	d = protowire.AppendTag(d, 3, protowire.BytesType)
	d = protowire.AppendBytes(d, []byte("hello from v2.1"))
	d = protowire.AppendTag(d, 99, protowire.VarintType)
	d = protowire.AppendVarint(d, 7)
	var f []byte
	f = protowire.AppendTag(f, 1, protowire.BytesType)
	f = protowire.AppendBytes(f, d)
	f = protowire.AppendTag(f, 15, protowire.BytesType)
	f = protowire.AppendBytes(f, []byte("a future field"))
	if _, err := s.Write(append(protowire.AppendVarint(nil, uint64(len(f))), f...)); err != nil {
		t.Fatal(err)
	}
	if ack := readAck(t, br); ack.Id != 1 || ack.Reason != pb.Reason_OK {
		t.Fatalf("ack %v", ack)
	}
	if got := tu.Next[p2p.Data](t, b.Receiver()); string(got.Bytes) != "hello from v2.1" {
		t.Fatalf("delivered %q", got.Bytes)
	}

	// The node writes to the peer on its stream; the peer refuses with a
	// reason from its future, in an Ack with a field 7.
	for i := uint64(1); i <= 2; i++ {
		b.Sender() <- p2p.SendMsg{Peer: ia.ID, ID: i, Data: fmt.Appendf(nil, "m%d", i)}
		msg := readFrame(t, br).GetData()
		if msg == nil {
			t.Fatal("no data frame from the node")
		}
		reason := uint64(0)
		if i == 1 {
			reason = 42
		}
		var a []byte
		a = protowire.AppendTag(a, 1, protowire.VarintType)
		a = protowire.AppendVarint(a, msg.Id)
		a = protowire.AppendTag(a, 2, protowire.VarintType)
		a = protowire.AppendVarint(a, reason)
		a = protowire.AppendTag(a, 7, protowire.VarintType)
		a = protowire.AppendVarint(a, 1)
		var af []byte
		af = protowire.AppendTag(af, 2, protowire.BytesType)
		af = protowire.AppendBytes(af, a)
		if _, err := s.Write(append(protowire.AppendVarint(nil, uint64(len(af))), af...)); err != nil {
			t.Fatal(err)
		}
		st := nextOf(t, b, statusOf(i), isError, isDisconnected)
		if i == 1 && (st.OK || st.Reason != p2p.ReasonRefused) {
			t.Fatalf("status %+v, want refused", st)
		}
		if i == 2 && !st.OK {
			t.Fatalf("status %+v: the stream did not go on after the refusal", st)
		}
	}
	if keys := b.Limiter().Stats().Peers.Keys; keys != 0 {
		t.Fatalf("%d peers charged", keys)
	}
}
