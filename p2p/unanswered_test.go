package p2p_test

import (
	"bufio"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// §4.3, §4.4: UNANSWERED (10) is a verdict Config.Accept may give: the node
// acks the frame with it, delivers nothing, charges nothing, and the stream
// goes on. A node that receives it reports the Status reason unanswered,
// not refused: it knows the reason.
func TestUnansweredVerdictOnTheWire(t *testing.T) {
	accept := func(d p2p.Data) (p2p.Reason, func() p2p.Reason) {
		if string(d.Bytes) == "asked before" {
			return p2p.ReasonUnanswered, nil
		}
		return p2p.ReasonOK, nil
	}
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) { c.Accept = accept })
	s := rawStream(t, ia, b, "127.0.0.1")
	br := bufio.NewReader(s)
	if _, err := s.Write(delimited(data(&pb.Data{Id: 1, Payload: []byte("asked before")}))); err != nil {
		t.Fatal(err)
	}
	if ack := readAck(t, br); ack.Id != 1 || ack.Reason != pb.Reason_UNANSWERED || pb.Reason_UNANSWERED != 10 {
		t.Fatalf("ack %v, want 1 UNANSWERED (10)", ack)
	}
	if _, err := s.Write(delimited(data(&pb.Data{Id: 2, Payload: []byte("new")}))); err != nil {
		t.Fatal(err)
	}
	if ack := readAck(t, br); ack.Id != 2 || ack.Reason != pb.Reason_OK {
		t.Fatalf("ack %v, want 2 OK on the same stream", ack)
	}
	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "new" {
		t.Fatalf("delivered %q", d.Bytes)
	}
	if keys := b.Limiter().Stats().Peers.Keys; keys != 0 {
		t.Fatalf("%d peers charged", keys)
	}

	// The sender's side, from a peer that acks UNANSWERED.
	ic := tu.NewIdentity(t)
	c := tu.Node(t, ic, tu.Allowlist(t, ic, ib))
	raw := newRawAcker(t, ib, func(_ int, d *pb.Data) []byte {
		return delimited(pb.AckFrame(&pb.Ack{Id: d.Id, Reason: pb.Reason_UNANSWERED}))
	})
	c.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: raw.host.Addrs()[0], ID: 1, Data: []byte("asked before")}
	if st := nextOf(t, c, statusOf(1), isError, isDisconnected); st.OK || st.Reason != p2p.ReasonUnanswered {
		t.Fatalf("status %+v, want unanswered", st)
	}
	if keys := c.Limiter().Stats().Peers.Keys; keys != 0 {
		t.Fatalf("%d peers charged", keys)
	}
	tu.None[p2p.Error](t, c.Receiver(), 50*time.Millisecond)
}
