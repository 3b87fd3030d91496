package handler_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// No reply within ReplyTimeout fails the exchange on both sides. The
// responder's deadline must come last: when it comes first, the responder
// closes the connection, and the dialer's resend is refused unanswered
// (TestRetryOfUnansweredRequestEndsAtOnce). The dialer's runs from its
// loop's taking the ack, the responder's from its loop's taking the
// request, which comes first; a dialer starved for 300 ms more than the
// responder (the race detector on a loaded machine) took its ack after the
// responder's deadline was due. So the responder's loop is held on the
// request until the dialer's exchange has ended: its node acks the request
// without it.
func TestReplyTimeout(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	var once sync.Once
	release := make(chan struct{})
	let := func() { once.Do(func() { close(release) }) }
	hold := func(ev p2p.Event) {
		if _, ok := ev.(p2p.Data); ok {
			<-release
		}
	}
	a := newHandler(t, ia, list, handler.WithReplyTimeout(300*time.Millisecond))
	b := newHandler(t, ib, list, handler.WithReplyTimeout(600*time.Millisecond), handler.WithObserver(hold))
	t.Cleanup(let) // before b's Close, which a held loop would not take
	id, _ := a.Request(b.PeerID(), addr(b), []byte("q"))

	o := outcome(t, a, id)
	expect(t, o, false, handler.ReasonReplyTimeout)
	if o.Stage != handler.StateAwaitReply || !errors.Is(o.Err, handler.ErrReplyTimeout) {
		t.Fatalf("dialer outcome %+v", o)
	}
	let()
	req := tu.Next[*handler.Request](t, b.Events())
	o = outcome(t, b, id)
	expect(t, o, false, handler.ReasonReplyTimeout)
	if o.Role != handler.Responder || o.Stage != handler.StateDelivered {
		t.Fatalf("responder outcome %+v", o)
	}
	if err := b.Response(req.From, req.Exchange, nil); !errors.Is(err, handler.ErrUnknownExchange) {
		t.Fatalf("late response: %v", err)
	}
}

// A peer that never acknowledges is faulty: the exchange fails and the
// peer is disconnected.
func TestAckTimeout(t *testing.T) {
	h, raw := rawPair(t, handler.WithNode(func(c *p2p.Config) { c.AckTimeout = 300 * time.Millisecond }))
	raw.setPolicy(func(*hpb.Envelope, int) pb.Reason { return noAck })
	down := watch(t, h, raw.id.ID).down
	id, _ := h.Request(raw.id.ID, raw.addr(), []byte("q"))
	// The Error comes first: the peer is judged faulty, then its exchanges fail.
	if e := tu.Next[*handler.Error](t, h.Outcomes()); e.Peer != raw.id.ID || !e.Disconnected {
		t.Fatalf("error %+v", e)
	}
	o := outcome(t, h, id)
	expect(t, o, false, handler.ReasonAckTimeout)
	if o.Stage != handler.StateDialing && o.Stage != handler.StateAwaitAck {
		t.Fatalf("outcome %+v", o)
	}
	wait(t, down, "disconnection of the faulty peer")
}

// A reply to nothing the handler asked is refused as an unknown exchange:
// it may answer this process's previous life, or another process sharing
// the key. It is no misbehaviour: no Error, no disconnection, no token
// spent, and the real exchange goes on.
func TestUnknownReply(t *testing.T) {
	h, raw := rawPair(t)
	id, _ := h.Request(raw.id.ID, raw.addr(), []byte("q"))
	if !h.WaitState(id, handler.StateAwaitReply, tu.Timeout) {
		t.Fatal("request never acknowledged")
	}
	if r := raw.send(h, envelope(hpb.Kind_KIND_REPLY, id+1, []byte("?"))); r != pb.Reason_UNKNOWN_EXCHANGE {
		t.Fatalf("stale reply acked %v", r)
	}
	if r := raw.send(h, envelope(hpb.Kind_KIND_REPLY, id, []byte("a"))); r != pb.Reason_OK {
		t.Fatalf("reply acked %v", r)
	}
	expect(t, outcome(t, h, id), true, handler.ReasonOK)
	tu.None[*handler.Error](t, h.Outcomes(), 50*time.Millisecond)
	if keys := h.Node().Limiter().Stats().Peers.Keys; keys != 0 {
		t.Fatalf("%d peers charged", keys)
	}
}

// A reply to a one-way message answers nothing the handler knows: refused
// unknown_exchange. A payload on the handler's channel that is not a valid
// envelope (it does not decode, its kind is unspecified or unknown, its
// exchange is 0) is refused MALFORMED by the handler's node, in its ack,
// before anything is delivered (docs/PROTOCOL.md §8): one malformed_message
// token each, no Error, no event, and the stream and the connection stay.
func TestMalformedAndMisplacedEnvelopes(t *testing.T) {
	h, raw := rawPair(t, handler.WithKeepConnection(true))
	w := watch(t, h, raw.id.ID)
	id, _ := h.Send(raw.id.ID, raw.addr(), []byte("m"))
	raw.setPolicy(func(*hpb.Envelope, int) pb.Reason { return holdAck })
	raw.next()
	if r := raw.send(h, envelope(hpb.Kind_KIND_REPLY, id, []byte("?"))); r != pb.Reason_UNKNOWN_EXCHANGE {
		t.Fatalf("reply to a message acked %v", r)
	}
	close(raw.hold)
	expect(t, outcome(t, h, id), true, handler.ReasonOK)
	stream := raw.out

	bad := []struct {
		name    string
		payload []byte
	}{
		{"not protobuf", []byte{0xff, 0xff}},
		{"bare payload", []byte("hello, handler")},
		{"empty", nil},
		{"kind unspecified", envelope(hpb.Kind_KIND_UNSPECIFIED, 1, nil)},
		{"unknown kind", envelope(hpb.Kind(9), 2, []byte("a kind from a newer handler"))},
		{"exchange 0", envelope(hpb.Kind_KIND_REQUEST, 0, []byte("q"))},
	}
	for _, c := range bad {
		if r := raw.send(h, c.payload); r != pb.Reason_MALFORMED {
			t.Fatalf("%s: acked %v, want MALFORMED", c.name, r)
		}
	}
	if n := h.Node().Limiter().Stats().Peers.Spent[ratelimit.MalformedMessage]; n != uint64(len(bad)) {
		t.Fatalf("%d malformed_message tokens spent, want %d", n, len(bad))
	}
	// A valid request follows on the same stream.
	if r := raw.send(h, envelope(hpb.Kind_KIND_REQUEST, 77, []byte("q"))); r != pb.Reason_OK {
		t.Fatalf("request acked %v", r)
	}
	if req := tu.Next[*handler.Request](t, h.Events()); req.Exchange != 77 {
		t.Fatalf("request %+v", req)
	}
	if raw.out != stream {
		t.Fatal("the raw peer had to open another stream")
	}
	tu.None[*handler.Error](t, h.Outcomes(), 50*time.Millisecond)
	select {
	case <-w.down:
		t.Fatal("the handler disconnected the peer")
	default:
	}
}

// A reply may overtake the ack of its request; it completes the exchange.
func TestReplyBeforeAck(t *testing.T) {
	h, raw := rawPair(t)
	raw.setPolicy(func(*hpb.Envelope, int) pb.Reason { return holdAck })
	id, _ := h.Request(raw.id.ID, raw.addr(), []byte("q"))
	raw.next()
	if r := raw.send(h, envelope(hpb.Kind_KIND_REPLY, id, []byte("a"))); r != pb.Reason_OK {
		t.Fatalf("reply acked %v", r)
	}
	if rep := tu.Next[*handler.Reply](t, h.Events()); rep.Exchange != id || string(rep.Data) != "a" {
		t.Fatalf("reply %+v", rep)
	}
	o := outcome(t, h, id)
	expect(t, o, true, handler.ReasonOK)
	if o.Stage != handler.StateDialing && o.Stage != handler.StateAwaitAck {
		t.Fatalf("outcome %+v", o)
	}
	raw.hold <- struct{}{} // the late ack is ignored
	tu.None[*handler.Outcome](t, h.Outcomes(), 50*time.Millisecond)
}

// A peer cut off by the rate limiter fails its exchanges, active and queued.
func TestRateLimitedPeer(t *testing.T) {
	ih, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	h := newHandler(t, ih, tu.Allowlist(t, ih, ir), handler.WithNode(func(c *p2p.Config) {
		c.RateLimit = ratelimit.Config{Burst: 1, BanDuration: time.Minute}
	}))
	raw := newRawPeer(t, ir, "127.0.0.2")
	active, _ := h.Request(ir.ID, raw.addr(), []byte("q"))
	queued, _ := h.Request(ir.ID, raw.addr(), []byte("q2"))
	raw.next()
	raw.send(h, envelope(hpb.Kind_KIND_REQUEST, 77, []byte("q")))
	tu.Next[*handler.Request](t, h.Events())
	notProtobuf := []byte{0x05, 0xff, 0xff, 0xff, 0xff, 0xff}
	if r, err := raw.sendFrame(h, notProtobuf); err != nil || r != pb.Reason_MALFORMED {
		t.Fatalf("ack %v, %v", r, err)
	}
	raw.sendFrame(h, notProtobuf) // its ack may be cut off with the peer
	cl := tu.NextMatch(t, h.Priority(), func(c *handler.ConnectionLimit) bool { return c.Peer == ir.ID })
	if cl.Reason != ratelimit.MalformedMessage || cl.Until.IsZero() {
		t.Fatalf("limit %+v", cl)
	}
	stages := map[handler.ExchangeID]handler.State{}
	for range 3 {
		o := tu.Next[*handler.Outcome](t, h.Outcomes())
		expect(t, o, false, handler.ReasonRateLimited)
		if !errors.Is(o.Err, handler.ErrRateLimited) {
			t.Fatalf("outcome %+v", o)
		}
		stages[o.Exchange] = o.Stage
	}
	if !oneOf(stages[active], handler.StateAwaitReply, handler.StateDialing) || stages[queued] != handler.StateQueued ||
		stages[77] != handler.StateDelivered {
		t.Fatalf("stages %v", stages)
	}
}

// A peer that disconnects while a request awaits its reply gets the request
// again (the responder needs a connection to reply on) and sees it once.
func TestDisconnectAwaitingReplyResends(t *testing.T) {
	a, b := pair(t)
	wb := watch(t, b, a.PeerID())
	id, _ := a.Request(b.PeerID(), addr(b), []byte("q"))
	req := tu.Next[*handler.Request](t, b.Events())
	wait(t, wb.up, "connection")
	if !a.WaitState(id, handler.StateAwaitReply, tu.Timeout) {
		t.Fatal("request never acknowledged")
	}
	b.Node().Host().Network().ClosePeer(a.PeerID())
	wait(t, wb.down, "disconnection")
	wait(t, wb.up, "the dialer reconnecting to resend")
	tu.None[*handler.Request](t, b.Events(), 50*time.Millisecond)
	if err := b.Response(req.From, req.Exchange, []byte("a")); err != nil {
		t.Fatal(err)
	}
	o := outcome(t, a, id)
	expect(t, o, true, handler.ReasonOK)
	if o.Attempts != 2 {
		t.Fatalf("attempts %d, want 2", o.Attempts)
	}
	expect(t, outcome(t, b, id), true, handler.ReasonOK)
}

// With no attempt left, the disconnection fails the exchange.
func TestDisconnectAwaitingReplyFails(t *testing.T) {
	a, b := pair(t, handler.WithRetry(1, time.Millisecond, time.Millisecond))
	id, _ := a.Request(b.PeerID(), addr(b), []byte("q"))
	if !a.WaitState(id, handler.StateAwaitReply, tu.Timeout) {
		t.Fatal("request never acknowledged")
	}
	b.Node().Host().Network().ClosePeer(a.PeerID())
	o := outcome(t, a, id)
	expect(t, o, false, handler.ReasonDisconnected)
	if o.Stage != handler.StateAwaitReply || !errors.Is(o.Err, handler.ErrDisconnected) {
		t.Fatalf("outcome %+v", o)
	}
}

// A responder killed mid-exchange: the dialer retries, then fails; nothing
// hangs.
func TestPeerKilledMidExchange(t *testing.T) {
	a, b := pair(t, handler.WithRetry(3, 5*time.Millisecond, 20*time.Millisecond))
	id, _ := a.Request(b.PeerID(), addr(b), []byte("q"))
	tu.Next[*handler.Request](t, b.Events())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.Shutdown(ctx) // no grace: the responder's exchange fails at once
	if o := outcome(t, b, id); o.Reason != handler.ReasonClosed || o.Stage != handler.StateDelivered {
		t.Fatalf("responder outcome %+v", o)
	}
	o := outcome(t, a, id)
	if o.OK || (o.Reason != handler.ReasonDisconnected && o.Reason != handler.ReasonDialFailed) {
		t.Fatalf("dialer outcome %+v", o)
	}
	if o.Attempts != 3 {
		t.Fatalf("attempts %d, want 3", o.Attempts)
	}
}

// A reply arriving while the request waits to be resent (its connection
// was lost after delivery) completes the exchange; a copy of it arriving
// after that is ignored.
func TestLateReplyDuringBackoff(t *testing.T) {
	h, raw := rawPair(t, handler.WithRetry(3, time.Minute, time.Minute), handler.WithKeepConnection(true))
	raw.setPolicy(func(*hpb.Envelope, int) pb.Reason { return noAck })
	id, _ := h.Request(raw.id.ID, raw.addr(), []byte("q"))
	raw.next()
	raw.host.Network().ClosePeer(h.PeerID()) // the ack is lost with the connection
	if !h.WaitState(id, handler.StateBackoff, tu.Timeout) {
		t.Fatal("no backoff")
	}
	reply := envelope(hpb.Kind_KIND_REPLY, id, []byte("a"))
	raw.send(h, reply)
	o := outcome(t, h, id)
	expect(t, o, true, handler.ReasonOK)
	if o.Stage != handler.StateBackoff {
		t.Fatalf("outcome %+v", o)
	}
	raw.send(h, reply)
	tu.None[*handler.Error](t, h.Outcomes(), 50*time.Millisecond)
}

// A responder whose reply waits to be resent sends it as soon as the dialer
// shows up again with its request.
func TestDuplicateRequestHurriesReply(t *testing.T) {
	h, raw := rawPair(t, handler.WithRetry(3, time.Minute, time.Minute), handler.WithKeepConnection(true))
	raw.setPolicy(busyFirst(1))
	req := envelope(hpb.Kind_KIND_REQUEST, 9, []byte("q"))
	raw.send(h, req)
	got := tu.Next[*handler.Request](t, h.Events())
	h.Response(got.From, got.Exchange, []byte("a"))
	raw.next() // refused busy: the reply backs off for a minute
	if !h.WaitState(9, handler.StateBackoff, tu.Timeout) {
		t.Fatal("no backoff")
	}
	raw.send(h, req)
	if env := raw.next(); env.Kind != hpb.Kind_KIND_REPLY {
		t.Fatalf("envelope %v", env)
	}
	o := outcome(t, h, 9)
	expect(t, o, true, handler.ReasonOK)
	if o.Attempts != 2 {
		t.Fatalf("outcome %+v", o)
	}
}

// A peer that turns faulty (here: it never acks our request) fails the
// exchanges it started with us too.
func TestFaultFailsResponderExchange(t *testing.T) {
	h, raw := rawPair(t, handler.WithNode(func(c *p2p.Config) { c.AckTimeout = 300 * time.Millisecond }))
	raw.send(h, envelope(hpb.Kind_KIND_REQUEST, 5, []byte("q")))
	tu.Next[*handler.Request](t, h.Events())
	raw.setPolicy(func(*hpb.Envelope, int) pb.Reason { return noAck })
	id, _ := h.Request(raw.id.ID, raw.addr(), []byte("q"))
	raw.next()
	if e := tu.Next[*handler.Error](t, h.Outcomes()); e.Peer != raw.id.ID || !e.Disconnected {
		t.Fatalf("error %+v", e)
	}
	got := map[handler.ExchangeID]*handler.Outcome{}
	for len(got) < 2 {
		o := tu.Next[*handler.Outcome](t, h.Outcomes())
		got[o.Exchange] = o
	}
	expect(t, got[id], false, handler.ReasonAckTimeout)
	o := got[5]
	expect(t, o, false, handler.ReasonAckTimeout)
	if o.Role != handler.Responder || o.Stage != handler.StateDelivered {
		t.Fatalf("outcome %+v", o)
	}
}

// Data on another p2p channel is not the handler's: reported, not
// delivered, and acked OK (the routing table let it through); it costs the
// peer a token (TestOtherChannelCharged).
func TestDataOnAnotherChannel(t *testing.T) {
	h, raw := rawPair(t)
	frame := frameBytes(pb.DataFrame(&pb.Data{Id: 1, Channel: 5, Payload: []byte("x")}))
	raw.host.Peerstore().AddAddr(h.PeerID(), addr(h), time.Minute)
	if r, err := raw.sendFrame(h, frame); err != nil || r != pb.Reason_OK {
		t.Fatalf("ack %v, %v", r, err)
	}
	e := tu.Next[*handler.Error](t, h.Outcomes())
	if e.Peer != raw.id.ID || e.Disconnected || !errors.Is(e.Err, handler.ErrUnexpectedMessage) {
		t.Fatalf("error %+v", e)
	}
	tu.None[handler.Event](t, h.Events(), 50*time.Millisecond)
}

// A peer taken off the allowlist while our request awaits its reply, and
// while its own request awaits our answer: both exchanges end at once with
// peer_removed, long before the reply timeout would end them.
func TestPeerRemovedEndsItsExchanges(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	listA := tu.Allowlist(t, ia, ib)
	a := newHandler(t, ia, listA, handler.WithReplyTimeout(time.Hour))
	b := newHandler(t, ib, tu.Allowlist(t, ia, ib), handler.WithReplyTimeout(time.Hour))

	ours, err := a.Request(b.PeerID(), addr(b), []byte("q"))
	if err != nil {
		t.Fatal(err)
	}
	tu.Next[*handler.Request](t, b.Events())
	theirs, err := b.Request(a.PeerID(), addr(a), []byte("q2"))
	if err != nil {
		t.Fatal(err)
	}
	if r := tu.Next[*handler.Request](t, a.Events()); r.Exchange != theirs {
		t.Fatalf("request %+v", r)
	}

	listA.Remove(b.PeerID())
	for range 2 {
		o := tu.Next[*handler.Outcome](t, a.Outcomes())
		expect(t, o, false, handler.ReasonPeerRemoved)
		if !errors.Is(o.Err, handler.ErrPeerRemoved) || (o.Exchange != ours && o.Exchange != theirs) {
			t.Fatalf("outcome %+v", o)
		}
	}
}
