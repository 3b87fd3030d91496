package p2p_test

import (
	"bufio"
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// §5: a stream the peer opens while a DisconnectFrom is taking the list of
// streams to drain is either on that list (drained: the acks it owes are
// written before the close) or refused before anything on it is judged.
// disconnect once took the list before marking the connection closing: a
// stream opened between the two was served, judged and delivered, and then
// closed with the connection, its acks unwritten (the sender resent what
// the node had taken). Accept holds its verdict until the connection is
// gone, so that the ack cannot slip out before the close by chance (the
// node refuses such a stream, so a drain never waits for that verdict).
func TestDisconnectWindowStreamOwesNoAck(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	raw := tu.RawHost(t, ia.Key, "127.0.0.1")
	accepted := make(chan struct{}) // closed when Accept judges the message
	var acceptOnce sync.Once
	release := make(chan struct{})
	var releaseOnce sync.Once
	unhold := func() { releaseOnce.Do(func() { close(release) }) }
	type result struct {
		acks []*pb.Ack
		err  error
	}
	read := make(chan result, 1)
	var hookOnce sync.Once
	hook := func() {
		hookOnce.Do(func() {
			// In the window: open a stream, send a message, and wait
			// until the node has judged it or refused the stream.
			ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
			defer cancel()
			s, err := raw.NewStream(ctx, ib.ID, p2p.ProtocolID)
			if err != nil {
				read <- result{err: err}
				return
			}
			if _, err := protodelim.MarshalTo(s, data(&pb.Data{Id: 1, Payload: []byte("window")})); err != nil {
				read <- result{err: err}
				return
			}
			go func() {
				// Reads the node's half to its end (or a reset): every
				// ack written before the close.
				var r result
				_ = s.SetReadDeadline(time.Now().Add(tu.Timeout))
				br := bufio.NewReader(s)
				for {
					var f pb.Frame
					if r.err = protodelim.UnmarshalFrom(br, &f); r.err != nil {
						break
					}
					if a := f.GetAck(); a != nil {
						r.acks = append(r.acks, a)
					}
				}
				read <- r
			}()
			select {
			case <-accepted:
			case r := <-read:
				read <- r // refused before it was judged
			case <-ctx.Done():
			}
		})
	}
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), p2p.WithDrainWait(10*tu.Timeout), p2p.WithDisconnectHook(hook),
		func(c *p2p.Config) {
			c.Accept = func(p2p.Data) (p2p.Reason, func() p2p.Reason) {
				acceptOnce.Do(func() { close(accepted) })
				return "", func() p2p.Reason { <-release; return p2p.ReasonOK }
			}
		})
	t.Cleanup(unhold) // before the node's Close, which waits for its streams

	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := raw.Connect(ctx, tu.AddrInfo(b)); err != nil {
		t.Fatal(err)
	}
	tu.Next[p2p.Connected](t, b.Receiver())
	b.Sender() <- p2p.DisconnectFrom{Peer: ia.ID}
	tu.Next[p2p.Disconnected](t, b.Receiver())

	var r result
	select {
	case r = <-read:
	case <-time.After(tu.Timeout):
		t.Fatal("the stream opened during the disconnection never ended")
	}
	unhold()
	select {
	case <-accepted:
		// Judged (and so taken, for a durable inbox): its ack was owed,
		// and must have been written before the stream ended.
		if len(r.acks) != 1 || r.acks[0].Id != 1 || r.acks[0].Reason != pb.Reason_OK {
			t.Fatalf("judged, then the stream ended (%v) with acks %v, want the OK ack of 1", r.err, r.acks)
		}
	default:
		// Refused before it was judged: nothing owed, nothing delivered.
		if len(r.acks) != 0 {
			t.Fatalf("refused stream carried acks %v", r.acks)
		}
		tu.None[p2p.Data](t, b.Receiver(), 50*time.Millisecond)
	}
}
