package handler_test

import (
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// TestRequestAgainWhileReplyAstray: two processes share a key. The
// connection of process 1 drops after its request was delivered, so the
// reply goes out on the only stream left with that key, process 0's.
// Process 1 reconnects and sends its request again while that reply awaits
// process 0's ack; process 0 then refuses it unknown_exchange. Process 1
// has asked again already and will not ask a third time: the reply must go
// to it at once, not wait parked for ReplyTimeout (30 s by default) for a
// request that already came, failing both sides' exchanges meanwhile.
// (This is the stall TestProcessesSharingAKey met once under load: there
// the responder's own disconnection, with a request delivered but not yet
// answered, drops the connection.)
func TestRequestAgainWhileReplyAstray(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	h := newHandler(t, ib, list, handler.WithKeepConnection(true), handler.WithReplyTimeout(2*tu.Timeout))
	p0, p1 := newRawPeer(t, ia, "127.0.0.1"), newRawPeer(t, ia, "127.0.0.2")
	p0.setPolicy(func(env *hpb.Envelope, _ int) pb.Reason {
		if env.Kind == hpb.Kind_KIND_REPLY {
			return holdUnknown
		}
		return pb.Reason_OK
	})
	// Process 0 opens a stream to h, which h keeps (KeepConnection).
	if r := p0.send(h, envelope(hpb.Kind_KIND_MESSAGE, 1, []byte("m"))); r != pb.Reason_OK {
		t.Fatalf("message acked %v", r)
	}
	tu.Next[*handler.Message](t, h.Events())

	const x = handler.ExchangeID(0xa57a)
	req := envelope(hpb.Kind_KIND_REQUEST, x, []byte("q"))
	if r := p1.send(h, req); r != pb.Reason_OK {
		t.Fatalf("request acked %v", r)
	}
	got := tu.Next[*handler.Request](t, h.Events())

	// Process 1's connection drops; h must have seen it go before the
	// reply leaves, or the reply would be written to it and fail.
	gone := make(chan struct{})
	var once sync.Once
	local := p1.out.s.Conn().LocalMultiaddr()
	notifee := &network.NotifyBundle{DisconnectedF: func(_ network.Network, c network.Conn) {
		if c.RemoteMultiaddr().Equal(local) {
			once.Do(func() { close(gone) })
		}
	}}
	h.Node().Host().Network().Notify(notifee)
	defer h.Node().Host().Network().StopNotify(notifee)
	p1.out.s.Reset()
	p1.out = nil
	if err := p1.host.Network().ClosePeer(h.PeerID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
	case <-time.After(tu.Timeout):
		t.Fatal("h did not see process 1's connection close")
	}

	if err := h.Response(got.From, x, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if env := p0.next(); env.Kind != hpb.Kind_KIND_REPLY || handler.ExchangeID(env.Exchange) != x {
		t.Fatalf("process 0 got %v", env)
	}
	// Process 1 is back and asks again while process 0 holds the reply's
	// ack. Its request reaches h's loop before the refusal below: both
	// are on the node's one event queue, the request's event before its ack.
	if r := p1.send(h, req); r != pb.Reason_OK {
		t.Fatalf("request resent acked %v", r)
	}
	p0.hold <- struct{}{} // refused unknown_exchange

	start := time.Now()
	select {
	case env := <-p1.got:
		if env.Kind != hpb.Kind_KIND_REPLY || handler.ExchangeID(env.Exchange) != x {
			t.Fatalf("process 1 got %v", env)
		}
	case <-time.After(tu.Timeout):
		t.Fatalf("the reply did not reach process 1 within %s (its request came again while the reply went astray)", tu.Timeout)
	}
	o := outcome(t, h, x)
	expect(t, o, true, handler.ReasonOK)
	if o.Attempts != 2 {
		t.Fatalf("outcome %+v, want 2 sends", o)
	}
	t.Logf("reply resent %v after its refusal", time.Since(start))
}
