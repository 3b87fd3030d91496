package p2p_test

import (
	"sync"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// A stream opened for a queued message whose connection closes before the
// message is written, while another message waits behind it: the first
// message fails with that connection (which the node cannot tell from the
// peer's refusal at the handshake), and the second goes on a new one. The
// peer's goroutine asked whether the next message shares the stream
// (lastOn), which found the stream dead and forgot it, and then wrote to
// the stream it had just forgotten: a nil stream, and the node died of a
// nil pointer (met once in a loaded run, when a connection closed just
// after it was dialed).
func TestStreamDeadBeforeFirstWrite(t *testing.T) {
	ia, ib, stranger := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	b := tu.Node(t, ib, list)
	takeAll(b)
	hold, entered, release := holdFirst(t)
	a := tu.Node(t, ia, list, p2p.WithOpenedHook(hold))

	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: b.Addrs()[0], ID: 1, Data: []byte("first")}
	if !within(entered) {
		t.Fatal("no stream was opened for the first message")
	}
	// The second message queues behind the first, whose stream is open and
	// not written yet. A send to a stranger is refused at once, in the
	// node loop, after the second message was queued: its Status says the
	// queue holds it.
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, ID: 2, Data: []byte("second")}
	a.Sender() <- p2p.SendMsg{Peer: stranger.ID, ID: 3, Data: []byte("probe")}
	if st := tu.NextMatch(t, a.Receiver(), statusOf(3)); st.OK {
		t.Fatalf("a message to a stranger was acked: %+v", st)
	}
	// The stream's connection closes before its first write.
	if err := a.Host().Network().ClosePeer(ib.ID); err != nil {
		t.Fatal(err)
	}
	release()

	if st := tu.NextMatch(t, a.Receiver(), statusOf(1)); !st.OK && st.Reason != p2p.ReasonDialFailed {
		t.Errorf("message 1: %s: %v; want ok or dial_failed", st.Reason, st.Err)
	}
	if st := tu.NextMatch(t, a.Receiver(), statusOf(2)); !st.OK {
		t.Errorf("message 2: %s: %v", st.Reason, st.Err)
	}
}

// A message that comes as the peer closes the stream idle: the stream's
// end has begun (it takes no message) but it is not marked ended yet, so
// it still looks usable. The message, refused by it, goes on a new stream
// on the same connection. It used to try that same stream a second time
// and fail connection_lost, although it was never written.
func TestMessageAsStreamEndsGoesOnNewStream(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	b := tu.Node(t, ib, list, func(c *p2p.Config) { c.StreamIdleTimeout = 50 * time.Millisecond })
	takeAll(b)
	hold, entered, release := holdFirst(t)
	a := tu.Node(t, ia, list, p2p.WithEndHook(func(inbound bool) {
		if !inbound {
			// The first stream's end, begun by b's idle close: held
			// here until the second message has its Status.
			hold()
		}
	}))
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: b.Addrs()[0], ID: 1, Data: []byte("first")}
	if st := nextOf(t, a, statusOf(1)); !st.OK {
		t.Fatalf("first message: %+v", st)
	}
	if !within(entered) {
		t.Fatal("b did not close the idle stream")
	}
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, ID: 2, Data: []byte("second")}
	st := nextOf(t, a, statusOf(2))
	release()
	if !st.OK {
		t.Fatalf("second message: %+v", st)
	}
}

// takeAll is n's application taking whatever it is given.
func takeAll(n *p2p.Node) {
	go func() {
		for range n.Receiver() {
		}
	}()
}

// holdFirst returns a hook that, the first time it runs, closes entered
// and waits until release, at most tu.Timeout; release also runs at
// Cleanup, so that a test that fails early leaves no hook waiting.
func holdFirst(t *testing.T) (hold func(), entered <-chan struct{}, release func()) {
	in, proceed := make(chan struct{}), make(chan struct{})
	enter := closeOnce(in)
	release = closeOnce(proceed)
	t.Cleanup(release)
	var once sync.Once
	return func() {
		once.Do(func() {
			enter()
			within(proceed)
		})
	}, in, release
}
