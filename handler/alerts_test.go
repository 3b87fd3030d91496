package handler_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// sendOn writes payload to h on p2p channel ch, on the raw peer's own
// stream, and returns its ack's reason or the error of a stream h cut.
func (r *rawPeer) sendOn(h *handler.Handler, ch uint32, payload []byte) (pb.Reason, error) {
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	return r.trySendOn(h, ch, payload)
}

// A peer sending data on a channel the handler does not take, as fast as
// it is acked, to an application not reading Outcomes: its Errors fold into
// one queued Error, so the Error about another peer that comes after them
// is not dropped past the queue's limit.
func TestOtherChannelErrorsDoNotCrowdOutOthers(t *testing.T) {
	ih, ia, ib := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	h := newHandler(t, ih, tu.Allowlist(t, ih, ia, ib),
		func(c *handler.Config) { c.EventBuffer = 1 },
		handler.WithNode(func(c *p2p.Config) {
			// A budget the flood does not exhaust: the folding is what
			// is under test here.
			c.RateLimit = ratelimit.Config{Burst: 100_000}
		}))
	a, b := newRawPeer(t, ia, "127.0.0.1"), newRawPeer(t, ib, "127.0.0.1")
	const flood = 1100 // past the Outcomes channel (1) and its queue (1024)
	for i := range flood {
		if r, err := a.sendOn(h, 5, []byte("x")); err != nil || r != pb.Reason_OK {
			t.Fatalf("frame %d: ack %v, %v", i, r, err)
		}
	}
	// A message on the handler's channel, on the same stream: once it is
	// delivered, the loop has taken every frame before it.
	a.send(h, envelope(hpb.Kind_KIND_MESSAGE, 1, []byte("m")))
	tu.Next[*handler.Message](t, h.Events())
	if r, err := b.sendOn(h, 5, []byte("y")); err != nil || r != pb.Reason_OK {
		t.Fatalf("b: ack %v, %v", r, err)
	}
	fromA := 0
	tu.NextMatch(t, h.Outcomes(), func(e *handler.Error) bool {
		if !errors.Is(e.Err, handler.ErrUnexpectedMessage) {
			t.Fatalf("error %+v", e)
		}
		if e.Peer == ia.ID {
			fromA += 1 + e.Repeats
		}
		return e.Peer == ib.ID
	})
	if fromA != flood {
		t.Fatalf("a's errors account for %d frames, want %d", fromA, flood)
	}
}

// Data on a channel the handler does not take costs its sender a token
// (unauthorized): a peer that keeps sending it is cut off.
func TestOtherChannelCharged(t *testing.T) {
	ih, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	h := newHandler(t, ih, tu.Allowlist(t, ih, ir), handler.WithNode(func(c *p2p.Config) {
		c.RateLimit = ratelimit.Config{Burst: 2, BanDuration: time.Minute}
	}))
	raw := newRawPeer(t, ir, "127.0.0.1")
	for i := range 3 { // the third spend finds the bucket empty
		if r, err := raw.sendOn(h, 5, []byte("x")); err != nil || r != pb.Reason_OK {
			if i < 2 {
				t.Fatalf("frame %d: ack %v, %v", i, r, err)
			}
		}
	}
	cl := tu.NextMatch(t, h.Priority(), func(c *handler.ConnectionLimit) bool { return c.Peer == ir.ID })
	if cl.Reason != ratelimit.Unauthorized || cl.Until.IsZero() {
		t.Fatalf("limit %+v", cl)
	}
}
