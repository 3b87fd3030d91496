package handler_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// TestReplayedReplyGivesNoSecondOutcome: a durable responder answers a
// request while its dialer is down, and reports the failed delivery of the
// reply in the exchange's one Outcome. The dialer then resumes and sends
// the request again: the reply is served again from the store and
// completes the dialer's exchange, but the responder's exchange ended
// already. The replay gives no second Outcome (it gave ok=true, or closed,
// after the failed one) and is not counted again in exchanges_total.
func TestReplayedReplyGivesNoSecondOutcome(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	reg := prometheus.NewRegistry()
	retry := handler.WithRetry(3, 10*time.Millisecond, 50*time.Millisecond)
	a := newNode(t, ia, list, retry)
	b := newNode(t, ib, list, retry, handler.WithMetrics(keptRegistry{reg}))
	id, err := a.h.Request(ib.ID, b.addr(), []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	req := nextRequest(t, b.h)
	a.stop() // its request is suspended in its store
	if err := b.h.Response(req.From, req.Exchange, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	first := outcome(t, b.h, id)
	if first.OK || first.Role != handler.Responder {
		t.Fatalf("responder's outcome with its dialer down: %+v, want a failure", first)
	}
	a.start() // resumes the request and sends it again: b replays its reply
	expect(t, outcome(t, a.h, id), true, handler.ReasonOK)
	if r := tu.Next[*handler.Reply](t, a.h.Events()); r.Exchange != id || string(r.Data) != "pong" {
		t.Fatalf("reply %+v, want the stored one", r)
	}
	// Close waits for the replay to end (acked, or closed at the
	// deadline); an Outcome it gave is then in the closed channel.
	bh := b.h
	b.stop()
	for ev := range bh.Outcomes() {
		if o, ok := ev.(*handler.Outcome); ok && o.Exchange == id {
			t.Errorf("second responder Outcome for %s: %+v (the first: %+v)", id, o, first)
		}
	}
	if n := responderEnds(t, reg); n != 1 {
		t.Errorf("responder exchanges counted: %v, want 1", n)
	}
}

// responderEnds sums bitvmx_p2p_exchanges_total over every result of the
// responder's requests.
func responderEnds(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range fams {
		if f.GetName() != "bitvmx_p2p_exchanges_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			role, kind := "", ""
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "role":
					role = l.GetValue()
				case "kind":
					kind = l.GetValue()
				}
			}
			if role == "responder" && kind == "request" {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
