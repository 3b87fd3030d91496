package main

import (
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// runningNode is the handler of a running node that sends to key k, the
// key the tools under test borrow. Its peer gets two sends of each message,
// quickly: enough to see what the tool answers. connected receives k's
// Connected events.
func runningNode(t *testing.T, id, k tu.Identity) (h *handler.Handler, connected <-chan struct{}) {
	t.Helper()
	up := make(chan struct{}, 16)
	h, err := handler.NewWithConfig(handler.Config{
		Node:        p2p.Config{Key: id.Key, Allowlist: tu.Allowlist(t, id, k)},
		MaxAttempts: 2, BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Observe: func(ev p2p.Event) {
			if c, ok := ev.(p2p.Connected); ok && c.Peer == k.ID {
				select {
				case up <- struct{}{}:
				default:
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, up
}

// Defect found by a soak: find, run with a running node's key, connected to
// a peer over the DHT; the peer sent that node's queued one-way messages
// on the connection, and find's node acked them OK and threw them away.
// find's node now serves no message stream: the peer's sends fail as a
// failed dial (retried later, to whoever holds the key then), never OK.
func TestFindNodeTakesNoMessage(t *testing.T) {
	ik, ip := tu.NewIdentity(t), tu.NewIdentity(t)
	n4, connected := runningNode(t, ip, ik)
	tool, err := startFindNode(p2p.Config{Key: ik.Key, Allowlist: tu.Allowlist(t, ik, ip)})
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Close()
	// The tool dials the peer, as find's DHT does.
	tool.Sender() <- p2p.Dial{Peer: ip.ID, Addr: n4.Addrs()[0]}
	select {
	case <-connected:
	case <-time.After(tu.Timeout):
		t.Fatal("the tool did not connect")
	}
	for i := range 3 {
		m, err := n4.Send(ik.ID, nil, []byte("for the node"))
		if err != nil {
			t.Fatal(err)
		}
		o := tu.NextMatch(t, n4.Outcomes(), func(o *handler.Outcome) bool { return o.Exchange == m })
		if o.OK || o.Reason != handler.ReasonDialFailed {
			t.Fatalf("send %d: outcome %+v, want dial_failed: find's node must not take a message", i, o)
		}
	}
}

// The same for send --standalone: its handler needs its own stream for
// the reply, but takes nothing else; what the peer sends to the key is
// refused busy.
func TestStandaloneSendTakesNoMessage(t *testing.T) {
	ik, ip := tu.NewIdentity(t), tu.NewIdentity(t)
	n4, _ := runningNode(t, ip, ik)
	tool, err := handler.NewWithConfig(standaloneHandlerConfig(runConfig{},
		p2p.Config{Key: ik.Key, Allowlist: tu.Allowlist(t, ik, ip)}, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Close()
	for i, kind := range []handler.Kind{handler.KindMessage, handler.KindRequest} {
		send := n4.Send
		if kind == handler.KindRequest {
			send = n4.Request
		}
		x, err := send(ik.ID, tool.Addrs()[0], []byte("for the node"))
		if err != nil {
			t.Fatal(err)
		}
		o := tu.NextMatch(t, n4.Outcomes(), func(o *handler.Outcome) bool { return o.Exchange == x })
		if o.OK || o.Reason != handler.ReasonNotAcked {
			t.Fatalf("%d (%s): outcome %+v, want not_acked: send's node must not take it", i, kind, o)
		}
	}
}
