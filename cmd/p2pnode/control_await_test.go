package main

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
)

// awaitFixture is an exchange's waiter as the run loop feeds it, and a
// caller's wait that has already ended (waited holds its tick).
func awaitFixture(t *testing.T) (*nodeControl, *waiter, <-chan time.Time, handler.Reply, handler.Outcome) {
	t.Helper()
	from, err := peer.Decode(testPeer)
	if err != nil {
		t.Fatal(err)
	}
	const id = handler.ExchangeID(0x1234)
	reply := handler.Reply{From: from, Exchange: id, Data: []byte("pong")}
	out := handler.Outcome{Peer: from, Exchange: id, Role: handler.Dialer, Kind: handler.KindRequest, OK: true,
		Reason: handler.ReasonOK, Reply: &reply, Attempts: 2, Duration: 3 * time.Millisecond}
	var ws waiters
	w := ws.add("api-test-1")
	waited := make(chan time.Time, 1)
	waited <- time.Now()
	return &nodeControl{r: &runner{}}, w, waited, reply, out
}

// send through the node said "no answer within --timeout" (exit 1) of a
// request the node had the reply to, and printed: the reply was handed
// over as the wait ended, the outcome (which the run loop hands over once
// it has printed it) not yet, and the wait's end answered "still running"
// without the reply. A reply that came answers the call: the exchange
// succeeded (a reply comes only with an OK outcome).
func TestExchangeReplyBeforeWaitEndsIsAnswered(t *testing.T) {
	c, w, waited, reply, _ := awaitFixture(t)
	w.reply <- reply // and the outcome held back, past the wait
	res, err := c.await(context.Background(), reply.Exchange, w, waited, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Running || !res.Ok || !res.HasReply || string(res.Reply) != "pong" || res.ReplyFrom != testPeer ||
		res.Exchange != reply.Exchange.String() {
		t.Fatalf("answer %v, want OK with the reply \"pong\" from %s", res, testPeer)
	}
	out, got, err := exchangeResult(res)
	if err != nil || !out.OK || got == nil || string(got.Data) != "pong" {
		t.Fatalf("send reads the answer as %+v, reply %v (%v), want OK with the reply", out, got, err)
	}
}

// With the outcome in as well when the wait ends, the answer is the
// outcome's, its attempts included, though select may take the wait's end
// first.
func TestExchangeOutcomeBeforeWaitEndsIsAnswered(t *testing.T) {
	for i := range 32 { // select picks among ready cases at random
		c, w, waited, reply, out := awaitFixture(t)
		w.reply <- reply
		w.outcome <- out
		res, err := c.await(context.Background(), reply.Exchange, w, waited, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if res.Running || !res.Ok || !res.HasReply || res.Attempts != 2 || res.DurationNs != int64(out.Duration) {
			t.Fatalf("try %d: answer %v, want the outcome's (OK, 2 attempts, 3ms) with the reply", i, res)
		}
	}
}

// With nothing in when the wait ends, the exchange goes on in the node,
// and the answer says so.
func TestExchangeNothingBeforeWaitEndsRuns(t *testing.T) {
	c, w, waited, reply, _ := awaitFixture(t)
	res, err := c.await(context.Background(), reply.Exchange, w, waited, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Running || res.Ok || res.HasReply || res.Exchange != reply.Exchange.String() {
		t.Fatalf("answer %v, want running, naming the exchange", res)
	}
}
