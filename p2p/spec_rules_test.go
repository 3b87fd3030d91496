package p2p_test

import (
	"bufio"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// Rules of docs/PROTOCOL.md that an implementer would otherwise have to
// guess, each pinned from a raw go-libp2p host writing the bytes the
// document describes.

// §4.2: a stream that ends within a frame (its prefix or its body) ends
// like a stream that ends between frames: the cut frame is neither
// delivered nor answered, the acks owed for the frames before it are still
// written (a lazy one included), the stream closes cleanly, and nothing is
// charged. It is not an unreadable frame.
func TestFrameCutAtStreamEnd(t *testing.T) {
	cuts := map[string][]byte{
		"in its prefix": {0x85},             // a varint still continued
		"in its body":   {0x06, 0x0a, 0x04}, // 3 of the 7 bytes announced
	}
	for name, cut := range cuts {
		t.Run(name, func(t *testing.T) {
			ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
			// The longest ack delay: the ack of the whole frame is held
			// when the cut frame's end is read.
			b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) { c.AckDelay = p2p.MaxAckDelay })
			s := rawStream(t, ia, b, "127.0.0.1")
			whole := mustDelimited(t, data(&pb.Data{Id: 1, LazyAck: true, Payload: []byte("whole")}))
			if _, err := s.Write(append(whole, cut...)); err != nil {
				t.Fatal(err)
			}
			if err := s.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(s)
			if ack := readAck(t, br); ack.Id != 1 || ack.Reason != pb.Reason_OK {
				t.Fatalf("ack %v, want id 1 OK", ack)
			}
			rest, err := io.ReadAll(br)
			if err != nil || len(rest) != 0 {
				t.Fatalf("after the ack: %x, %v; want a clean end", rest, err)
			}
			if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "whole" {
				t.Fatalf("delivered %q", d.Bytes)
			}
			tu.None[p2p.Data](t, b.Receiver(), 50*time.Millisecond)
			if keys := b.Limiter().Stats().Peers.Keys; keys != 0 {
				t.Fatalf("%d peers charged", keys)
			}
		})
	}
}

// §4.4: an id-0 ack answers the sender's oldest unanswered frame with its
// reason, whatever the reason is, and says the peer closes the stream: the
// frame gets its Status from that reason, the stream ends, nothing is
// charged, and the next message goes on a new stream, also when it is sent
// the moment that Status is out, before the stream has ended.
func TestIDZeroAckSettlesTheOldestFrame(t *testing.T) {
	for _, tc := range []struct {
		reason pb.Reason
		want   p2p.Reason
	}{
		{pb.Reason_MALFORMED, p2p.ReasonMalformed},
		{pb.Reason_TOO_LARGE, p2p.ReasonTooLarge},
		{pb.Reason_OK, p2p.ReasonOK},
	} {
		t.Run(tc.reason.String(), func(t *testing.T) {
			ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
			var (
				a       *p2p.Node
				armed   atomic.Bool
				written = make(chan struct{}, 1)
			)
			onWrite := func() {
				if armed.Load() {
					select {
					case written <- struct{}{}:
					default:
					}
				}
			}
			// Message 2 leaves while the reader that settled message 1
			// has yet to end the stream, and the stream's end waits until
			// message 2 is written somewhere: on the first stream, it
			// would fail with it.
			sendNext := func() {
				armed.Store(true)
				a.Sender() <- p2p.SendMsg{Peer: ib.ID, ID: 2, Data: []byte("y")}
				select {
				case <-written:
				case <-time.After(tu.Timeout):
				}
			}
			a = tu.Node(t, ia, tu.Allowlist(t, ia, ib), p2p.WithOpenedStreamHooks(onWrite, nil), p2p.WithRefusedHook(sendNext))
			raw := newRawAcker(t, ib, func(stream int, d *pb.Data) []byte {
				if stream == 1 {
					return delimited(pb.AckFrame(&pb.Ack{Id: 0, Reason: tc.reason}))
				}
				return nil
			})
			a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: raw.host.Addrs()[0], ID: 1, Data: []byte("x")}
			if st := nextOf(t, a, statusOf(1), isDisconnected); st.Reason != tc.want {
				t.Fatalf("status %+v, want %s", st, tc.want)
			}
			if st := nextOf(t, a, statusOf(2), isDisconnected); !st.OK {
				t.Fatalf("status %+v of the next message", st)
			}
			if n := raw.streams.Load(); n != 2 {
				t.Fatalf("%d streams, want the next message on a second one", n)
			}
			if keys := a.Limiter().Stats().Peers.Keys; keys != 0 {
				t.Fatalf("%d peers charged", keys)
			}
		})
	}
}

// §4.4: an Ack written when nothing of the node's is unanswered (acks are
// never acked, so an "ack of an ack" is one) is a protocol violation: the
// node resets the stream and charges one protocol_violation token.
func TestAckForNothingResetsStream(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib))
	s := rawStream(t, ia, b, "127.0.0.1")
	br := bufio.NewReader(s)
	// A message first, so that the node has written to the stream: the
	// stray ack follows the node's own ack.
	if _, err := protodelim.MarshalTo(s, data(&pb.Data{Id: 1, Payload: []byte("m")})); err != nil {
		t.Fatal(err)
	}
	if ack := readAck(t, br); ack.Id != 1 || ack.Reason != pb.Reason_OK {
		t.Fatalf("ack %v", ack)
	}
	if _, err := protodelim.MarshalTo(s, pb.AckFrame(&pb.Ack{Id: 1})); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(br); err == nil || len(rest) != 0 {
		t.Fatalf("after the stray ack: %x, %v; want a reset", rest, err)
	}
	if n := b.Limiter().Stats().Peers.Spent[ratelimit.ProtocolViolation]; n != 1 {
		t.Fatalf("%d protocol_violation tokens spent, want 1", n)
	}
}

// §4.3, §4.4: Data ids may skip values but never repeat or go back: a
// duplicate frame (the same id again) is unreadable, answered by an id-0
// MALFORMED ack that closes the stream, and costs a malformed_message
// token; the frame before it was delivered once. An empty payload is a
// message like any other.
func TestDataIDsSkipButNeverRepeat(t *testing.T) {
	for name, second := range map[string]uint64{"repeated": 7, "going back": 3} {
		t.Run(name, func(t *testing.T) {
			ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
			b := tu.Node(t, ib, tu.Allowlist(t, ia, ib))
			s := rawStream(t, ia, b, "127.0.0.1")
			br := bufio.NewReader(s)
			// Ids 5 then 7: a gap is fine. The payload of 7 is empty.
			for _, d := range []*pb.Data{{Id: 5, Payload: []byte("five")}, {Id: 7}} {
				if _, err := protodelim.MarshalTo(s, data(d)); err != nil {
					t.Fatal(err)
				}
				if ack := readAck(t, br); ack.Id != d.Id || ack.Reason != pb.Reason_OK {
					t.Fatalf("ack %v, want id %d OK", ack, d.Id)
				}
				if got := tu.Next[p2p.Data](t, b.Receiver()); string(got.Bytes) != string(d.Payload) {
					t.Fatalf("delivered %q, want %q", got.Bytes, d.Payload)
				}
			}
			if _, err := protodelim.MarshalTo(s, data(&pb.Data{Id: second, Payload: []byte("again")})); err != nil {
				t.Fatal(err)
			}
			if ack := readAck(t, br); ack.Id != 0 || ack.Reason != pb.Reason_MALFORMED {
				t.Fatalf("ack %v, want id 0 MALFORMED", ack)
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Fatalf("after the final ack: %x, %v; want a clean end", rest, err)
			}
			tu.None[p2p.Data](t, b.Receiver(), 50*time.Millisecond)
			if n := b.Limiter().Stats().Peers.Spent[ratelimit.MalformedMessage]; n != 1 {
				t.Fatalf("%d malformed_message tokens spent, want 1", n)
			}
		})
	}
}

// §4.6: the size limit counts the bytes of Data.payload alone, and a
// payload of exactly the limit is taken: one byte more is refused
// TOO_LARGE with the frame's id.
func TestPayloadOfExactlyTheLimit(t *testing.T) {
	const limit = 100
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) { c.MaxMessageSize = limit })
	s := rawStream(t, ia, b, "127.0.0.1")
	br := bufio.NewReader(s)
	for i, tc := range []struct {
		size int
		want pb.Reason
	}{{limit, pb.Reason_OK}, {limit + 1, pb.Reason_TOO_LARGE}} {
		id := uint64(i + 1)
		d := &pb.Data{Id: id, Channel: 1 << 31, FromChannel: 1 << 31, LazyAck: true, Payload: make([]byte, tc.size)}
		if _, err := protodelim.MarshalTo(s, data(d)); err != nil {
			t.Fatal(err)
		}
		if ack := readAck(t, br); ack.Id != id || ack.Reason != tc.want {
			t.Fatalf("payload of %d bytes: ack %v, want id %d %s", tc.size, ack, id, tc.want)
		}
	}
	if d := tu.Next[p2p.Data](t, b.Receiver()); len(d.Bytes) != limit {
		t.Fatalf("delivered %d bytes", len(d.Bytes))
	}
}
