package handler_test

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// Conformance of the handler to docs/PROTOCOL.md and docs/handler-fsm.md
// where another implementation meets it. The malformed-envelope refusal is
// TestMalformedAndMisplacedEnvelopes (fault_test.go).

// ackFailure checks that an outcome failed with reason, its AckError with the p2p
// reason r.
func ackFailure(t *testing.T, o *handler.Outcome, reason handler.Reason, r p2p.Reason) {
	t.Helper()
	expect(t, o, false, reason)
	var ae *handler.AckError
	if !errors.As(o.Err, &ae) || ae.Reason != r {
		t.Fatalf("outcome error %v, want an AckError with %s", o.Err, r)
	}
}

// refusalOnly checks that the failure just seen was all the peer's refusal
// did: with the peer acking normally again, the next message goes through
// on the same connection, no Error was reported, the handler did not
// disconnect the peer and, unless the refusal cost a token (uncharged
// false), nobody was charged.
func refusalOnly(t *testing.T, h *handler.Handler, raw *rawPeer, w *connWatch, uncharged bool) {
	t.Helper()
	raw.setPolicy(nil)
	id, _ := h.Send(raw.id.ID, nil, []byte("again"))
	expect(t, outcome(t, h, id), true, handler.ReasonOK)
	tu.None[*handler.Error](t, h.Outcomes(), 50*time.Millisecond)
	select {
	case <-w.down:
		t.Fatal("the handler disconnected the peer")
	default:
	}
	if keys := h.Node().Limiter().Stats().Peers.Keys; uncharged && keys != 0 {
		t.Fatalf("%d peers charged", keys)
	}
}

// PROTOCOL.md §4.4: an ack with the wrong id fails the message (the
// exchange ends unexpected_message) and resets the stream; the peer is
// charged one protocol_violation token, and that is all: no Error, no
// disconnection, and the next exchange runs on the same connection.
func TestWrongAckIDFailsExchangeOnly(t *testing.T) {
	h, raw := rawPair(t, handler.WithKeepConnection(true))
	w := watch(t, h, raw.id.ID)
	raw.setPolicy(func(*hpb.Envelope, int) pb.Reason { return wrongID })
	id, _ := h.Send(raw.id.ID, raw.addr(), []byte("m"))
	o := outcome(t, h, id)
	ackFailure(t, o, handler.ReasonUnexpectedMessage, p2p.ReasonProtocolError)
	if o.Attempts != 1 {
		t.Fatalf("attempts %d: a protocol error is not retried", o.Attempts)
	}
	if n := h.Node().Limiter().Stats().Peers.Spent[ratelimit.ProtocolViolation]; n != 1 {
		t.Fatalf("%d protocol_violation tokens spent, want 1", n)
	}
	refusalOnly(t, h, raw, w, false)
}

// PROTOCOL.md §4.3, §9: an ack reason this node does not know ends the
// exchange as refused (not_acked, p2p reason refused), at once, and nothing
// else: no Error, no fault, no disconnection, no token.
func TestUnknownAckReasonFailsExchangeOnly(t *testing.T) {
	h, raw := rawPair(t, handler.WithKeepConnection(true))
	w := watch(t, h, raw.id.ID)
	raw.setPolicy(func(*hpb.Envelope, int) pb.Reason { return pb.Reason(99) })
	id, _ := h.Request(raw.id.ID, raw.addr(), []byte("q"))
	o := outcome(t, h, id)
	ackFailure(t, o, handler.ReasonNotAcked, p2p.ReasonRefused)
	if o.Attempts != 1 {
		t.Fatalf("attempts %d", o.Attempts)
	}
	refusalOnly(t, h, raw, w, true)
}

// PROTOCOL.md §4.3, §4.4: a request refused UNANSWERED (the peer's
// application left it unanswered before) ends at once, not resent, with
// ReasonUnanswered and ErrUnanswered; it is a refusal and nothing more: no
// Error, no fault, no disconnection, no token.
func TestUnansweredAckEndsExchangeAtOnce(t *testing.T) {
	h, raw := rawPair(t, handler.WithKeepConnection(true))
	w := watch(t, h, raw.id.ID)
	raw.setPolicy(func(*hpb.Envelope, int) pb.Reason { return pb.Reason_UNANSWERED })
	id, _ := h.Request(raw.id.ID, raw.addr(), []byte("q"))
	o := outcome(t, h, id)
	ackFailure(t, o, handler.ReasonUnanswered, p2p.ReasonUnanswered)
	if o.Attempts != 1 || !errors.Is(o.Err, handler.ErrUnanswered) {
		t.Fatalf("outcome %+v: want one send, ErrUnanswered", o)
	}
	refusalOnly(t, h, raw, w, true)
}

// PROTOCOL.md §4.6: a message refused TOO_MANY_IN_FLIGHT (the peer's limit
// is below ours) is resent, like one refused busy.
func TestTooManyInFlightIsResent(t *testing.T) {
	h, raw := rawPair(t)
	raw.setPolicy(func(_ *hpb.Envelope, n int) pb.Reason {
		if n == 1 {
			return pb.Reason_TOO_MANY_IN_FLIGHT
		}
		return pb.Reason_OK
	})
	id, _ := h.Send(raw.id.ID, raw.addr(), []byte("m"))
	o := outcome(t, h, id)
	expect(t, o, true, handler.ReasonOK)
	if o.Attempts != 2 {
		t.Fatalf("attempts %d, want 2", o.Attempts)
	}
}

// PROTOCOL.md §5, handler-fsm.md (who closes): the dialer that got the
// reply closes after Linger (here at once) while its node still holds the
// reply's lazy ack (the responder keeps connections, so it asked for one);
// the close writes that ack first, so the responder's exchange completes
// on its first send instead of seeing connection_lost and resending.
func TestCloseWritesTheReplysAck(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	dialer := newHandler(t, ia, list, handler.WithLinger(time.Millisecond),
		handler.WithNode(func(c *p2p.Config) { c.AckDelay = p2p.MaxAckDelay }))
	responder := newHandler(t, ib, list, handler.WithKeepConnection(true))
	down := watch(t, dialer, ib.ID).down
	id, _ := dialer.Request(ib.ID, addr(responder), []byte("q"))
	req := tu.Next[*handler.Request](t, responder.Events())
	if err := responder.Response(req.From, req.Exchange, []byte("a")); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, dialer, id), true, handler.ReasonOK)
	o := outcome(t, responder, id)
	expect(t, o, true, handler.ReasonOK)
	if o.Attempts != 1 {
		t.Fatalf("responder attempts %d: the reply's ack was lost in the dialer's close", o.Attempts)
	}
	wait(t, down, "the dialer's close")
}

// handler/pb/exchange.proto and handler-fsm.md name the message protocol
// the envelopes travel on, and it is this version's.
func TestEnvelopeSchemaNamesTheProtocol(t *testing.T) {
	re := regexp.MustCompile(`/bitvmx/msg/[0-9.]+`)
	for _, f := range []string{"pb/exchange.proto", "../p2p/pb/message.proto", "../docs/handler-fsm.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		found := re.FindAllString(string(b), -1)
		if len(found) == 0 {
			t.Errorf("%s names no protocol ID", f)
		}
		for _, id := range found {
			if id != p2p.ProtocolID {
				t.Errorf("%s names %s, the protocol is %s", f, id, p2p.ProtocolID)
			}
		}
	}
}

// handler-fsm.md (Wire): the text form of an exchange ID is 16 lowercase hex
// digits, zero-padded; parsers take 1 to 16 hex digits of either case, not
// zero.
func TestExchangeIDTextForm(t *testing.T) {
	for id, want := range map[handler.ExchangeID]string{
		0xab:               "00000000000000ab",
		0xFEDCBA9876543210: "fedcba9876543210",
		1:                  "0000000000000001",
	} {
		if got := id.String(); got != want {
			t.Errorf("%#x prints %q, want %q", uint64(id), got, want)
		}
		for _, s := range []string{want, strings.ToUpper(want), strings.TrimLeft(want, "0")} {
			if back, err := handler.ParseExchangeID(s); err != nil || back != id {
				t.Errorf("ParseExchangeID(%q) = %v, %v", s, back, err)
			}
		}
	}
	for _, s := range []string{"", "0", "0000000000000000", "10000000000000000", "xyz", "-1",
		"000000000000000000ab", "+ab", "0x00000000000000ab"} {
		if _, err := handler.ParseExchangeID(s); err == nil {
			t.Errorf("ParseExchangeID(%q) accepted", s)
		}
	}
}

// handler-fsm.md (Wire): a handler's Data frames carry its Config.Channel as
// both channel and from_channel; it takes envelopes on its channel whatever
// their from_channel, as far as its routing table permits.
func TestEnvelopeChannels(t *testing.T) {
	const channel = 7
	h, raw := rawPair(t, handler.WithKeepConnection(true), func(c *handler.Config) { c.Channel = channel })
	id, _ := h.Send(raw.id.ID, raw.addr(), []byte("m"))
	env := raw.next()
	v, _ := raw.data.Load(env)
	if d := v.(*pb.Data); d.Channel != channel || d.FromChannel != channel {
		t.Fatalf("data frame on channel %d from channel %d, want %d and %d", d.Channel, d.FromChannel, channel, channel)
	}
	expect(t, outcome(t, h, id), true, handler.ReasonOK)

	raw.host.Peerstore().AddAddr(h.PeerID(), addr(h), time.Minute)
	frame := frameBytes(pb.DataFrame(&pb.Data{Id: 1, Channel: channel, FromChannel: 3,
		Payload: envelope(hpb.Kind_KIND_MESSAGE, 42, []byte("from channel 3"))}))
	if r, err := raw.sendFrame(h, frame); err != nil || r != pb.Reason_OK {
		t.Fatalf("ack %v, %v", r, err)
	}
	if m := tu.Next[*handler.Message](t, h.Events()); m.Exchange != 42 {
		t.Fatalf("message %+v", m)
	}
}
