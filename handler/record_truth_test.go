package handler_test

import (
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// outboxRecord is a's outbox record of id, once the writes a has queued so
// far are on disk (an empty batch commits after them).
func outboxRecord(t *testing.T, a *node, id handler.ExchangeID) store.Outgoing {
	t.Helper()
	if err := a.st.Store.Commit(&store.Batch{}); err != nil {
		t.Fatal(err)
	}
	out, err := a.st.OutgoingList()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.ID == uint64(id) {
			return o
		}
	}
	t.Fatalf("exchange %s not in the outbox: %+v", id, out)
	return store.Outgoing{}
}

// TestAttemptsCountTheFirstSend: the outbox record of a request sent once
// says one attempt (what p2pnode outbox list shows), not 0; the exchange
// resumed after a restart counts that send, and its Outcome says at least
// one attempt even when its reply comes before it sends again.
func TestAttemptsCountTheFirstSend(t *testing.T) {
	a, b := durablePair(t)
	id, req := requestWithoutAddr(t, a, b)
	if !a.h.WaitState(id, handler.StateAwaitReply, tu.Timeout) {
		t.Fatal("the request is not awaiting its reply")
	}
	if o := outboxRecord(t, a, id); o.Attempts != 1 {
		t.Fatalf("outbox record %+v: a request sent once shows %d attempts", o, o.Attempts)
	}
	a.stop()
	a.opts = append(a.opts, handler.WithResolver(blockingResolver{}))
	a.start()
	if !a.h.WaitState(id, handler.StateResolving, tu.Timeout) {
		t.Fatal("the resumed request does not wait for the Resolver")
	}
	b.h.Node().Host().Peerstore().AddAddr(a.id.ID, a.listen, time.Hour)
	if err := b.h.Response(req.From, req.Exchange, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	o := outcome(t, a.h, id)
	expect(t, o, true, handler.ReasonOK)
	if !o.Resumed || o.Attempts != 1 {
		t.Fatalf("resumed outcome %+v: want the send of its previous life counted", o)
	}
}

// TestRetryKeepsCreated: a dead letter retried on a running handler keeps
// its creation time in the outbox and, failing again, in the dead letters,
// as a retry on a stopped node's store does (p2pnode deadletters retry).
// Its record counts its first send once made.
func TestRetryKeepsCreated(t *testing.T) {
	a, b := durablePair(t, handler.WithRetry(2, time.Millisecond, time.Millisecond))
	b.stop()
	id := deadLetter(t, a, b, "7")
	dls, err := a.st.DeadLetters()
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters %+v, %v", dls, err)
	}
	created := dls[0].Created
	b.start()
	if err := a.h.RetryDeadLetters(id); err != nil {
		t.Fatal(err)
	}
	nextRequest(t, b.h) // not answered: the retry awaits its reply
	if !a.h.WaitState(id, handler.StateAwaitReply, tu.Timeout) {
		t.Fatal("the retry is not awaiting its reply")
	}
	o := outboxRecord(t, a, id)
	if !o.Created.Equal(created) {
		t.Fatalf("created %s after the retry, was %s", o.Created, created)
	}
	if o.Attempts != 1 {
		t.Fatalf("outbox record %+v: the retry, sent once, shows %d attempts", o, o.Attempts)
	}
}
