package p2p_test

import (
	"bufio"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// ackWait is how long these tests wait for an ack owed at once: far
// under the node's read timeout (set to a minute below), far over any
// scheduling delay.
const ackWait = 3 * time.Second

// readAckWithin reads the next frame within d, which must be an ack; it
// reports false if none came in time.
func readAckWithin(t *testing.T, s interface{ SetReadDeadline(time.Time) error }, br *bufio.Reader, d time.Duration) (*pb.Ack, bool) {
	t.Helper()
	if err := s.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	defer s.SetReadDeadline(time.Time{})
	var f pb.Frame
	if err := protodelim.UnmarshalFrom(br, &f); err != nil {
		return nil, false
	}
	if f.GetAck() == nil {
		t.Fatalf("got %v, want an ack", &f)
	}
	return f.GetAck(), true
}

// §4.4: "It MUST flush an ack before it blocks waiting for more input".
// A frame followed, in the same read, by the first bytes of the next one
// (a sender's write buffer filled mid-frame, a large frame on its way) is
// acked at once, not once the next frame has arrived whole.
func TestAckNotHeldBehindPartialFrame(t *testing.T) {
	for _, lazy := range []bool{false, true} {
		t.Run(map[bool]string{false: "eager", true: "lazy"}[lazy], func(t *testing.T) {
			ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
			b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) { c.ReadTimeout = time.Minute })
			s := rawStream(t, ia, b, "127.0.0.1")
			br := bufio.NewReader(s)

			second := delimited(data(&pb.Data{Id: 2, Payload: make([]byte, 200)}))
			burst := append(delimited(data(&pb.Data{Id: 1, Payload: []byte("a"), LazyAck: lazy})), second[:10]...)
			if _, err := s.Write(burst); err != nil {
				t.Fatal(err)
			}
			tu.Next[p2p.Data](t, b.Receiver())
			ack, ok := readAckWithin(t, s, br, ackWait)
			// The rest of frame 2, whatever happened: the stream ends clean.
			if _, err := s.Write(second[10:]); err != nil {
				t.Fatal(err)
			}
			if !ok {
				t.Fatalf("frame 1 delivered, but no ack within %s: held until frame 2 is whole", ackWait)
			}
			if ack.Id != 1 || ack.Reason != pb.Reason_OK {
				t.Fatalf("ack %v", ack)
			}
			if ack := readAck(t, br); ack.Id != 2 || ack.Reason != pb.Reason_OK {
				t.Fatalf("ack %v", ack)
			}
		})
	}
}
