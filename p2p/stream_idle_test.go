package p2p_test

import (
	"bufio"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protodelim"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// §4.1: a node closes a message stream that carries nothing for
// StreamIdleTimeout, gracefully (the peer reads the end of the stream, not
// a reset), keeps the connection, and opens a new stream for its next
// message. Seen from a raw host, whose reader meets the end.
func TestIdleStreamClosed(t *testing.T) {
	ia, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ir)
	reg := prometheus.NewRegistry()
	a := tu.Node(t, ia, list, func(c *p2p.Config) { c.StreamIdleTimeout = 20 * time.Millisecond; c.Metrics = reg })
	raw := tu.RawHost(t, ir.Key, "127.0.0.1")
	ended := make(chan error, 4)
	raw.SetStreamHandler(p2p.ProtocolID, func(s network.Stream) {
		err := readData(s, ackEach(s))
		if errors.Is(err, errReadFrame) {
			s.Close()
		}
		ended <- err
	})

	for id := range uint64(2) {
		a.Sender() <- p2p.SendMsg{Peer: ir.ID, Addr: raw.Addrs()[0], ID: id + 1, Data: []byte("q")}
		if st := nextOf(t, a, statusOf(id+1)); !st.OK {
			t.Fatalf("message %d: status %+v", id+1, st)
		}
		// The node ends the stream it opened: the raw host reads its end.
		select {
		case err := <-ended:
			if !errors.Is(err, io.EOF) {
				t.Fatalf("stream %d ended with %v, want the end of the stream (a graceful close)", id+1, err)
			}
		case <-time.After(tu.Timeout):
			t.Fatalf("the idle stream %d was not closed within %s", id+1, tu.Timeout)
		}
		if len(raw.Network().ConnsToPeer(ia.ID)) == 0 {
			t.Fatal("the connection closed with the idle stream")
		}
	}
	if got := metricValue(t, reg, "bitvmx_p2p_streams_idle_closed_total", nil); got != 2 {
		t.Errorf("bitvmx_p2p_streams_idle_closed_total = %v, want 2", got)
	}
}

// The same for a stream the peer opened: the node closes it once idle, and
// the peer, reading its end, may open another. The timeout is longer than
// the outbound test's: a stream the peer opened is closed if its first
// frame takes more than two timeouts to arrive, which a loaded machine
// could make happen in 40 ms.
func TestIdleInboundStreamClosed(t *testing.T) {
	ia, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ir)
	a := tu.Node(t, ia, list, func(c *p2p.Config) { c.StreamIdleTimeout = 200 * time.Millisecond })
	raw := tu.RawHost(t, ir.Key, "127.0.0.1")
	raw.Peerstore().AddAddrs(ia.ID, a.Addrs(), time.Hour)
	for id := range uint64(2) {
		s, err := raw.NewStream(t.Context(), ia.ID, p2p.ProtocolID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(delimited(pb.DataFrame(&pb.Data{Id: 1, Payload: []byte("q")}))); err != nil {
			t.Fatal(err)
		}
		tu.Next[p2p.Data](t, a.Receiver())
		br := bufio.NewReader(s)
		var f pb.Frame
		if err := protodelim.UnmarshalFrom(br, &f); err != nil || f.GetAck().GetId() != 1 {
			t.Fatalf("stream %d: ack %v, %v", id+1, &f, err)
		}
		_ = s.SetReadDeadline(time.Now().Add(tu.Timeout))
		if err := protodelim.UnmarshalFrom(br, &f); !errors.Is(err, io.EOF) {
			t.Fatalf("stream %d: read %v after the ack, want the end of the stream", id+1, err)
		}
		s.Close()
	}
}
