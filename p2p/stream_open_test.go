package p2p_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/prometheus/client_golang/prometheus"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// §1, §4.1: the node proposes the message protocol with its stream's first
// frame, without waiting for identify. A peer whose identify never answers
// (it reads the request and holds the stream) still gets the message at
// once; go-libp2p's Host.NewStream would wait for that identify until the
// dial timeout and fail the message.
func TestFirstMessageDoesNotWaitForIdentify(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	// The dial timeout is shorter than the test's wait, so a node that
	// waited for identify would fail the message within it.
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) { c.DialTimeout = tu.Timeout / 3 })
	raw := newRawAcker(t, ia, nil)
	var mu sync.Mutex
	var held []network.Stream
	raw.host.SetStreamHandler(identify.ID, func(s network.Stream) {
		mu.Lock()
		defer mu.Unlock()
		held = append(held, s)
	})
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range held {
			s.Reset()
		}
	})

	b.Sender() <- p2p.SendMsg{Peer: ia.ID, Addr: raw.host.Addrs()[0], ID: 1, Data: []byte("to you")}
	if st := tu.Next[p2p.Status](t, b.Receiver()); !st.OK {
		t.Fatalf("status %+v: the message waited for identify", st)
	}
}

// A peer that refuses the message protocol (it speaks libp2p but not
// /bitvmx/msg/2.0.0) fails the message as a failed dial, read from the
// answer to the proposal, and is charged nothing.
func TestPeerNotSpeakingTheProtocol(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	reg := prometheus.NewRegistry()
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) { c.Metrics = reg })
	raw := tu.RawHost(t, ia.Key, "127.0.0.1") // serves identify, not the message protocol

	b.Sender() <- p2p.SendMsg{Peer: ia.ID, Addr: raw.Addrs()[0], ID: 1, Data: []byte("to you")}
	st := tu.Next[p2p.Status](t, b.Receiver())
	if st.Reason != p2p.ReasonDialFailed || st.Err == nil || !strings.Contains(st.Err.Error(), "does not speak") {
		t.Fatalf("status %+v (%v), want dial_failed: the peer does not speak the protocol", st, st.Err)
	}
	if got := metricValue(t, reg, "bitvmx_p2p_misbehaviour_total", nil); got != 0 {
		t.Errorf("the peer was charged %v tokens", got)
	}
}

// A peer whose allowlist lacks this node closes the connection once the
// Noise handshake is over, before it accepts anything on it. The first
// frame left with the proposal, so the refusal reads on the stream: it is
// reported dial_failed with ErrClosedAtHandshake (what the CLI explains),
// not as a stream lost, on every attempt.
func TestRefusedAtHandshakeSeenOnTheStream(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	a := tu.Node(t, ia, tu.Allowlist(t, ia, ib))
	b := tu.Node(t, ib, tu.Allowlist(t, ib)) // does not list a
	for id := uint64(1); id <= 3; id++ {
		a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: b.Addrs()[0], ID: id, Data: []byte("let me in")}
		st := nextOf(t, a, statusOf(id))
		if st.Reason != p2p.ReasonDialFailed || !errors.Is(st.Err, p2p.ErrClosedAtHandshake) {
			t.Fatalf("attempt %d: status %+v (%v), want dial_failed: %v", id, st, st.Err, p2p.ErrClosedAtHandshake)
		}
	}
}

// A peer that accepted the message stream, and acked on it, then resets it
// with the code go-libp2p uses for a failed protocol negotiation has not
// refused the protocol: the message it took before the reset may have been
// delivered, so it is reported connection_lost (the handler retries it),
// never dial_failed ("not delivered").
func TestNegotiationFailedResetAfterAnswerIsStreamLost(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib))
	raw := tu.RawHost(t, ia.Key, "127.0.0.1")
	raw.SetStreamHandler(p2p.ProtocolID, func(s network.Stream) {
		ack := ackEach(s)
		err := readData(s, func(d *pb.Data) error {
			if d.Id == 1 {
				return ack(d)
			}
			_ = s.ResetWithError(network.StreamProtocolNegotiationFailed)
			return errStopReading
		})
		if errors.Is(err, errReadFrame) {
			s.Reset()
		}
	})

	b.Sender() <- p2p.SendMsg{Peer: ia.ID, Addr: raw.Addrs()[0], ID: 1, Data: []byte("first")}
	// Acked: the node has read the answer to its proposal.
	if st := nextOf(t, b, statusOf(1)); !st.OK {
		t.Fatalf("status %+v", st)
	}
	b.Sender() <- p2p.SendMsg{Peer: ia.ID, ID: 2, Data: []byte("second")}
	if st := nextOf(t, b, statusOf(2)); st.OK || st.Reason == p2p.ReasonDialFailed {
		t.Fatalf("status %+v (%v), want a stream lost, not dial_failed", st, st.Err)
	}
}

// A node with NoInboundMessages serves no message stream: a peer's message
// to it fails as a failed dial (the sender keeps it to retry), and is
// neither acked OK nor delivered. Its own messages still go, and their
// acks come back on the stream it opened.
func TestNoInboundMessagesRefusesPeersStreams(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	tool := tu.Node(t, ia, list, func(c *p2p.Config) { c.NoInboundMessages = true })
	b := tu.Node(t, ib, list)

	b.Sender() <- p2p.SendMsg{Peer: ia.ID, Addr: tool.Addrs()[0], ID: 1, Data: []byte("for the node, not the tool")}
	if st := tu.Next[p2p.Status](t, b.Receiver()); st.OK || st.Reason != p2p.ReasonDialFailed {
		t.Fatalf("status %+v (%v), want dial_failed: the tool must not take the message", st, st.Err)
	}
	tool.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: b.Addrs()[0], ID: 1, Data: []byte("from the tool")}
	if st := tu.Next[p2p.Status](t, tool.Receiver()); !st.OK {
		t.Fatalf("the tool's own message: status %+v (%v), want ok", st, st.Err)
	}
	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "from the tool" {
		t.Fatalf("b got %q", d.Bytes)
	}
}
