package p2p_test

import (
	"bufio"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/encoding/protodelim"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// A message waiting in a peer's send queue is written (flushed) even when
// the message queued behind it goes on another stream: a reply by Via, on
// the stream its request came on. The first used to stay in its stream's
// buffer until something else flushed that stream, which with the
// handler's automatic disconnection was the peer's close a linger later:
// the peer read the end of the stream, not the message, and the sender
// resent it (about one exchange in four in TestAllToAll).
func TestQueuedMessageFlushedBeforeOneOnAnotherStream(t *testing.T) {
	ia, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ir)
	// One message in flight per stream: the second waits in the queue for
	// the first's ack, and the reply queues behind it. The ack timeout is
	// longer than the test waits: a stream whose ack is overdue fails, and
	// failing flushes what it buffered, which would hide the stall (and
	// charge the honest peer an unanswered_ack token).
	a := tu.Node(t, ia, list, func(c *p2p.Config) { c.MaxInFlight = 1; c.AckTimeout = 4 * tu.Timeout })
	raw := tu.RawHost(t, ir.Key, "127.0.0.1")
	type received struct {
		s  network.Stream
		id uint64
	}
	onOurs := make(chan received, 4) // Data frames on the stream the node opened
	raw.SetStreamHandler(p2p.ProtocolID, func(s network.Stream) {
		_ = readData(s, func(d *pb.Data) error { onOurs <- received{s, d.Id}; return nil })
	})

	// 1. m1 opens the node's stream and stays unacked: the stream is full.
	a.Sender() <- p2p.SendMsg{Peer: ir.ID, Addr: raw.Addrs()[0], ID: 1, Data: []byte("m1")}
	var first received
	select {
	case first = <-onOurs:
	case <-time.After(tu.Timeout):
		t.Fatal("m1 did not arrive")
	}

	// 2. The peer asks something on a stream of its own.
	theirs, err := raw.NewStream(t.Context(), ia.ID, p2p.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := theirs.Write(delimited(pb.DataFrame(&pb.Data{Id: 1, Payload: []byte("question")}))); err != nil {
		t.Fatal(err)
	}
	question := tu.Next[p2p.Data](t, a.Receiver())

	// 3. m2 queues behind m1's ack; the answer, by Via, queues behind m2,
	// and m3 behind the answer, for the node's stream again. A message to
	// a peer off the allowlist, refused by the node's loop, shows that the
	// loop has queued all three before m1 is acked.
	stranger := tu.NewIdentity(t)
	for _, m := range []p2p.SendMsg{
		{Peer: ir.ID, ID: 2, Data: []byte("m2")},
		{Peer: ir.ID, ID: 3, Data: []byte("answer"), Via: question.Origin},
		{Peer: ir.ID, ID: 5, Data: []byte("m3")},
		{Peer: stranger.ID, ID: 4, Data: []byte("probe")},
	} {
		if err := a.Send(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	if st := nextOf(t, a, statusOf(4)); st.OK {
		t.Fatalf("the probe to a stranger: %+v", st)
	}

	// 4. m1's ack frees the slot: m2 must reach the peer on the node's
	// stream, and the answer on the peer's, though m3 (which waits for m2's
	// ack, never sent) is written after neither.
	if _, err := first.s.Write(delimited(pb.AckFrame(&pb.Ack{Id: first.id}))); err != nil {
		t.Fatal(err)
	}
	if st := nextOf(t, a, statusOf(1)); !st.OK {
		t.Fatalf("m1: %+v", st)
	}
	select {
	case got := <-onOurs:
		if got.s != first.s || got.id != first.id+1 {
			t.Fatalf("got frame %d on another stream, want m2 after m1", got.id)
		}
	case <-time.After(tu.Timeout):
		t.Fatal("m2 never left the node's buffer: the answer's write on another stream did not flush it")
	}
	br := bufio.NewReader(theirs)
	sawAnswer := false
	for !sawAnswer {
		_ = theirs.SetReadDeadline(time.Now().Add(tu.Timeout))
		var f pb.Frame
		if err := protodelim.UnmarshalFrom(br, &f); err != nil {
			t.Fatalf("reading the peer's stream for the answer: %v", err)
		}
		sawAnswer = string(f.GetData().GetPayload()) == "answer"
	}
}
