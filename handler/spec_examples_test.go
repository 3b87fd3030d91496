package handler_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"sync"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// TestEnvelopeExamples plays docs/PROTOCOL.md §6's exchange against a
// handler node from a raw host: it writes the page's request bytes, and
// reads back, byte for byte, the page's ack-and-reply (the request's ack,
// then the reply of an application that answers "pong"). Then it acks the
// reply as the page says, and the exchange ends done at the node.
func TestEnvelopeExamples(t *testing.T) {
	doc := tu.DocHex(t, tu.ProtocolDoc)
	ih, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	h := newHandler(t, ih, tu.Allowlist(t, ih, ir))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ev := range h.Events() {
			if r, ok := ev.(*handler.Request); ok && string(r.Data) == "ping" {
				h.Response(r.From, r.Exchange, []byte("pong"))
			}
		}
	}()
	t.Cleanup(func() {
		h.Close()
		wg.Wait()
	})
	raw := tu.RawHost(t, ir.Key, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := raw.Connect(ctx, tu.AddrInfo(h.Node())); err != nil {
		t.Fatal(err)
	}
	s, err := raw.NewStream(ctx, h.PeerID(), p2p.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(doc["request"]); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(doc["ack-and-reply"]))
	if _, err := io.ReadFull(bufio.NewReader(s), got); err != nil {
		t.Fatalf("reading the ack and the reply: %v (so far % x)", err, got)
	}
	if !bytes.Equal(got, doc["ack-and-reply"]) {
		t.Fatalf("the handler wrote\n% x\nthe page says\n% x", got, doc["ack-and-reply"])
	}
	if _, err := s.Write(doc["ack-ok"]); err != nil {
		t.Fatal(err)
	}
	o := tu.NextMatch(t, h.Outcomes(), func(o *handler.Outcome) bool { return o.Exchange == 0x0123456789abcdef })
	expect(t, o, true, handler.ReasonOK)
}

// TestExchangeIDIsTheSendersWhateverTheKind: docs/PROTOCOL.md §6. A
// handler recognises a resend by the sender and the exchange ID alone: a
// request that reuses the ID of a one-way message the same peer sent is
// taken for a resend of it, acked OK and not delivered; another peer may
// use the same ID for an exchange of its own.
func TestExchangeIDIsTheSendersWhateverTheKind(t *testing.T) {
	ih, ir, iother := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	h := newHandler(t, ih, tu.Allowlist(t, ih, ir, iother))
	r, other := newRawPeer(t, ir, "127.0.0.1"), newRawPeer(t, iother, "127.0.0.1")
	const x handler.ExchangeID = 0x1122334455667788
	if reason := r.send(h, envelope(hpb.Kind_KIND_MESSAGE, x, []byte("message"))); reason != pb.Reason_OK {
		t.Fatalf("message acked %s", reason)
	}
	if m := tu.NextMatch(t, h.Events(), func(*handler.Message) bool { return true }); m.Exchange != x {
		t.Fatalf("message %+v", m)
	}
	if reason := r.send(h, envelope(hpb.Kind_KIND_REQUEST, x, []byte("request"))); reason != pb.Reason_OK {
		t.Fatalf("request acked %s", reason)
	}
	if reason := other.send(h, envelope(hpb.Kind_KIND_REQUEST, x, []byte("other's request"))); reason != pb.Reason_OK {
		t.Fatalf("the other peer's request acked %s", reason)
	}
	// The next event is the other peer's request: the first peer's,
	// sent before it, was not delivered.
	ev := tu.NextMatch(t, h.Events(), func(ev handler.Event) bool {
		switch ev.(type) {
		case *handler.Request, *handler.Message:
			return true
		}
		return false
	})
	if req, ok := ev.(*handler.Request); !ok || req.From != other.id.ID || string(req.Data) != "other's request" {
		t.Fatalf("delivered %+v, want the other peer's request only", ev)
	}
}
