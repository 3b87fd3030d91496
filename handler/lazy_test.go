package handler_test

import (
	"fmt"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// The handler asks for lazy acks where an answer will carry them: on
// requests always, on replies only when the connection stays (without
// KeepConnection the reply's ack is what lets the responder hang up), and
// never on one-way messages.
func TestLazyAckPolicy(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprint("keep=", keep), func(t *testing.T) {
			h, raw := rawPair(t, handler.WithKeepConnection(keep))
			lazy := func(env *hpb.Envelope, kind hpb.Kind) bool {
				t.Helper()
				if env.Kind != kind {
					t.Fatalf("got a %v, want a %v", env.Kind, kind)
				}
				v, _ := raw.lazy.Load(env)
				return v.(bool)
			}

			if _, err := h.Send(raw.id.ID, raw.addr(), []byte("note")); err != nil {
				t.Fatal(err)
			}
			if lazy(raw.next(), hpb.Kind_KIND_MESSAGE) {
				t.Error("a one-way message asked for a lazy ack")
			}
			tu.Next[*handler.Outcome](t, h.Outcomes())

			if _, err := h.Request(raw.id.ID, raw.addr(), []byte("q")); err != nil {
				t.Fatal(err)
			}
			if !lazy(raw.next(), hpb.Kind_KIND_REQUEST) {
				t.Error("a request did not ask for a lazy ack")
			}

			if r := raw.send(h, envelope(hpb.Kind_KIND_REQUEST, 77, []byte("x"))); r != pb.Reason_OK {
				t.Fatalf("request ack %v", r)
			}
			req := tu.Next[*handler.Request](t, h.Events())
			if err := h.Response(req.From, req.Exchange, []byte("a")); err != nil {
				t.Fatal(err)
			}
			if got := lazy(raw.next(), hpb.Kind_KIND_REPLY); got != keep {
				t.Errorf("reply lazy_ack = %v with KeepConnection %v", got, keep)
			}
		})
	}
}
