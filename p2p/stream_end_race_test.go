package p2p_test

import (
	"bufio"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/encoding/protodelim"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// within reports whether ch is closed within the tests' timeout: for hooks,
// which run outside the test's goroutine and may not fail it.
func within(ch <-chan struct{}) bool {
	timer := time.NewTimer(tu.Timeout)
	defer timer.Stop()
	select {
	case <-ch:
		return true
	case <-timer.C:
		return false
	}
}

// closeOnce returns a function closing ch, which may be called many times.
func closeOnce(ch chan struct{}) func() {
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// A stream the peer opens is looked at twice for a closing connection:
// before it joins the node's set of streams and after. In between a
// SendMsg can be written to it: the node loop and Send's fast path write
// to the newest stream with the peer. The second look used to refuse the
// stream with a bare reset, leaving that message on a stream nobody would
// end: under DisconnectFrom its Status came only with the ack timeout
// (ack_timeout, and the peer charged an unanswered ack for a fault of
// ours); under Close it never came. It must fail at once, not the peer's
// fault.
func TestStreamRefusedAfterAddGivesStatus(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	raw := tu.RawHost(t, ia.Key, "127.0.0.1")
	node := make(chan *p2p.Node, 1)
	written := make(chan struct{}) // the raw end read our message
	marked := make(chan struct{})  // a DisconnectFrom marked the connection closing
	wrote, mark := closeOnce(written), closeOnce(marked)
	var addOnce sync.Once
	added := func() {
		addOnce.Do(func() {
			b := <-node
			b.Sender() <- p2p.SendMsg{Peer: ia.ID, ID: 7, Data: []byte("m")}
			if within(written) {
				b.Sender() <- p2p.DisconnectFrom{Peer: ia.ID}
				within(marked)
			}
		})
	}
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), p2p.WithStreamAddedHook(added), p2p.WithDisconnectHook(mark),
		func(c *p2p.Config) { c.AckTimeout = 5 * time.Second })
	node <- b

	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := raw.Connect(ctx, tu.AddrInfo(b)); err != nil {
		t.Fatal(err)
	}
	s, err := raw.NewStream(ctx, ib.ID, p2p.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	// The protocol proposal leaves with the first write: only then does
	// the node see the stream.
	if _, err := protodelim.MarshalTo(s, data(&pb.Data{Id: 1, Payload: []byte("x")})); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = s.SetReadDeadline(time.Now().Add(tu.Timeout))
		br := bufio.NewReader(s)
		for {
			var f pb.Frame
			if protodelim.UnmarshalFrom(br, &f) != nil {
				return
			}
			if f.GetData() != nil {
				wrote()
			}
		}
	}()
	st := tu.NextMatch(t, b.Receiver(), func(s p2p.Status) bool { return s.MsgID == 7 })
	if st.Reason != p2p.ReasonConnectionLost {
		t.Fatalf("message on the refused stream: %+v, want connection_lost at once", st)
	}
}

// Close ends the streams left once its own goroutines have stopped, and
// only then closes the Receiver, so that our messages on them get their
// Status. A stream the peer opened is read by a go-libp2p goroutine, which
// Close does not wait for, and which may be ending the stream itself at
// that moment (here: the peer closed its half). Close's own end of it then
// returned at once, and Close closed the Receiver before that end had
// pushed the Statuses, which were dropped.
func TestCloseWaitsForStreamEndInProgress(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	raw := tu.RawHost(t, ia.Key, "127.0.0.1")
	entered := make(chan struct{})  // the reader began ending the stream
	waiting := make(chan struct{})  // Close waits for that end
	received := make(chan struct{}) // the Receiver is closed
	var endOnce sync.Once
	onEnd := func(inbound bool) {
		if !inbound {
			return
		}
		endOnce.Do(func() {
			close(entered)
			// Held until Close waits for this end, or has closed the
			// Receiver without waiting.
			timer := time.NewTimer(tu.Timeout)
			defer timer.Stop()
			select {
			case <-waiting:
			case <-received:
			case <-timer.C:
			}
		})
	}
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), p2p.WithEndHook(onEnd),
		p2p.WithCloseWaitHook(closeOnce(waiting)), p2p.WithDrainWait(10*time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := raw.Connect(ctx, tu.AddrInfo(b)); err != nil {
		t.Fatal(err)
	}
	s, err := raw.NewStream(ctx, ib.ID, p2p.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := protodelim.MarshalTo(s, data(&pb.Data{Id: 1, Payload: []byte("x")})); err != nil {
		t.Fatal(err)
	}
	tu.Next[p2p.Data](t, b.Receiver())
	got := make(chan struct{})
	go func() {
		_ = s.SetReadDeadline(time.Now().Add(tu.Timeout))
		br := bufio.NewReader(s)
		for {
			var f pb.Frame
			if protodelim.UnmarshalFrom(br, &f) != nil {
				return
			}
			if f.GetData() != nil {
				close(got)
				return // never acked
			}
		}
	}()
	b.Sender() <- p2p.SendMsg{Peer: ia.ID, ID: 7, Data: []byte("m")}
	if !within(got) {
		t.Fatal("the message never reached the peer")
	}
	if err := s.CloseWrite(); err != nil { // the reader meets the end and ends the stream
		t.Fatal(err)
	}
	if !within(entered) {
		t.Fatal("the reader never ended the stream")
	}
	go b.Close()
	statuses := 0
	deadline := time.NewTimer(tu.Timeout)
	defer deadline.Stop()
	for open := true; open; {
		select {
		case ev, ok := <-b.Receiver():
			if st, isStatus := ev.(p2p.Status); isStatus && st.MsgID == 7 {
				statuses++
			}
			open = ok
		case <-deadline.C:
			t.Fatal("Close never closed the Receiver")
		}
	}
	close(received)
	if statuses != 1 {
		t.Fatalf("the message awaiting its ack got %d Statuses before the Receiver closed, want 1", statuses)
	}
}

// peerSender.open waits for a DisconnectFrom closing the peer's
// connection before it opens a stream; but a DisconnectFrom can begin
// after that wait, mark the connection closing and list its streams before
// the new one is added. That stream was then never drained: a reply the
// peer wrote on it was taken (Accept) and then closed with the connection
// (here held open by Node.Hold for a while) without its ack. The stream
// must be refused, like a stream the peer opens then, and the message sent
// on a fresh connection once the old one is gone.
func TestOpenDuringDisconnectDrained(t *testing.T) {
	ia, ib, stranger := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	raw := tu.RawHost(t, ia.Key, "127.0.0.1")
	results := make(chan string, 4) // "" when the reply's ack arrived
	raw.SetStreamHandler(p2p.ProtocolID, func(s network.Stream) {
		defer s.Reset()
		_ = s.SetReadDeadline(time.Now().Add(tu.Timeout))
		br := bufio.NewReader(s)
		replied := false
		for {
			var f pb.Frame
			if err := protodelim.UnmarshalFrom(br, &f); err != nil {
				results <- fmt.Sprintf("the stream ended (%v) without the ack of the reply", err)
				return
			}
			if d := f.GetData(); d != nil && !replied {
				replied = true
				out := append(delimited(pb.AckFrame(&pb.Ack{Id: d.Id})), delimited(data(&pb.Data{Id: 1, Payload: []byte("reply")}))...)
				if _, err := s.Write(out); err != nil {
					results <- fmt.Sprintf("write: %v", err)
					return
				}
			}
			if a := f.GetAck(); a != nil && a.Id == 1 {
				results <- ""
				return
			}
		}
	})
	node := make(chan *p2p.Node, 1)
	probed := make(chan struct{})   // the DisconnectFrom has been handled
	judged := make(chan struct{})   // the reply awaits its verdict
	outEnded := make(chan struct{}) // a stream of ours ended
	outEnd := closeOnce(outEnded)
	verdict := make(chan struct{})
	releaseVerdict := closeOnce(verdict)
	var openOnce sync.Once
	opened := func() {
		openOnce.Do(func() {
			b := <-node
			b.Sender() <- p2p.DisconnectFrom{Peer: ia.ID}
			// Handled after the DisconnectFrom: its Status says that the
			// connection is marked closing and its streams listed.
			b.Sender() <- p2p.SendMsg{Peer: stranger.ID, ID: 99, Data: []byte("probe")}
			within(probed)
		})
	}
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), p2p.WithOpenHook(opened),
		p2p.WithEndHook(func(inbound bool) {
			if !inbound {
				outEnd()
			}
		}),
		func(c *p2p.Config) {
			judge := closeOnce(judged)
			c.Accept = func(p2p.Data) (p2p.Reason, func() p2p.Reason) {
				judge()
				return "", func() p2p.Reason { <-verdict; return p2p.ReasonOK }
			}
		})
	t.Cleanup(releaseVerdict) // before the node's Close
	node <- b

	addr := raw.Addrs()[0]
	b.Sender() <- p2p.Dial{Peer: ia.ID, Addr: addr}
	tu.Next[p2p.Connected](t, b.Receiver())
	release := b.Hold(ia.ID)
	defer release()
	b.Sender() <- p2p.SendMsg{Peer: ia.ID, Addr: addr, ID: 1, Data: []byte("q")}
	tu.NextMatch(t, b.Receiver(), func(s p2p.Status) bool { return s.MsgID == 99 })
	close(probed)
	// Either the stream was opened on the connection being closed, and the
	// reply on it awaits its verdict, or it was refused.
	select {
	case <-judged:
	case <-outEnded:
	case <-time.After(tu.Timeout):
		t.Fatal("the message was neither sent nor its stream refused")
	}
	release()
	// Until the old connection is gone, message 1 may not fail: it goes
	// on a new one.
	tu.NextMatch(t, b.Receiver(), func(ev p2p.Event) bool {
		if s, ok := ev.(p2p.Status); ok && s.MsgID == 1 && !s.OK {
			t.Fatalf("message 1 failed: %s (%v)", s.Reason, s.Err)
		}
		_, gone := ev.(p2p.Disconnected)
		return gone
	})
	releaseVerdict()
	deadline := time.After(tu.Timeout)
	for {
		select {
		case r := <-results:
			if r != "" {
				t.Fatal(r)
			}
			return
		case ev := <-b.Receiver():
			if s, ok := ev.(p2p.Status); ok && s.MsgID == 1 && !s.OK {
				t.Fatalf("message 1 failed: %s (%v)", s.Reason, s.Err)
			}
		case <-deadline:
			t.Fatal("the peer never got the message")
		}
	}
}
