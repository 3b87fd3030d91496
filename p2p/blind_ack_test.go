package p2p_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// A peer can ack a frame of ours once it has seen its first bytes, without
// reading the rest: our wire IDs are 1, 2, 3... The Status must still wait
// until the node has finished writing the frame, because a caller may
// reuse Data once told OK (SendMsg.Data): the handler puts its envelopes
// back in a pool then, and a Status reported while the write still read
// them would let the rest of this frame carry whatever the pool's next
// user wrote, to this peer.
func TestBlindAckStatusWaitsForTheWrite(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	a := tu.Node(t, ia, tu.Allowlist(t, ia, ib))
	read := make(chan struct{})
	raw := tu.RawHost(t, ib.Key, "127.0.0.1")
	raw.SetStreamHandler(p2p.ProtocolID, func(s network.Stream) {
		// The frame's first bytes, so that the ack follows the frame's
		// registration; then the ack, and nothing more read until the
		// test says so: far more than the stream's window stays unread.
		if _, err := io.ReadFull(s, make([]byte, 16)); err != nil {
			s.Reset()
			return
		}
		if _, err := s.Write(delimited(pb.AckFrame(&pb.Ack{Id: 1}))); err != nil {
			s.Reset()
			return
		}
		<-read
		_, _ = io.Copy(io.Discard, s)
	})
	big := bytes.Repeat([]byte{7}, p2p.DefaultMaxMessageSize)
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: raw.Addrs()[0], ID: 1, Data: big}
	// Proving an absence takes a fixed wait: the ack is read at once, and
	// the write it answers cannot end while the peer reads nothing.
	tu.None[p2p.Status](t, a.Receiver(), 300*time.Millisecond)
	close(read)
	if st := nextOf(t, a, statusOf(1), isDisconnected); !st.OK {
		t.Fatalf("status %+v, want OK once the frame is written", st)
	}
}
