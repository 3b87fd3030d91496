package handler_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// deadLetter makes a fail a request to b, which is down, for good, and
// returns its ID once it is in a's dead letters.
func deadLetter(t *testing.T, a, b *node, tag string) handler.ExchangeID {
	t.Helper()
	id, err := a.h.Request(b.id.ID, b.listen, []byte("again"), handler.WithTag(tag))
	if err != nil {
		t.Fatal(err)
	}
	if o := outcome(t, a.h, id); !o.DeadLettered {
		t.Fatalf("outcome %+v: not dead-lettered", o)
	}
	return id
}

// RetryDeadLetters runs a dead letter again, on the running handler, with
// its ID and tag and a fresh attempt count; it leaves the dead letters.
func TestRetryDeadLetters(t *testing.T) {
	a, b := durablePair(t, handler.WithRetry(2, time.Millisecond, time.Millisecond))
	b.stop()
	id := deadLetter(t, a, b, "7")
	b.start()
	echo(t, b.h)

	if err := a.h.RetryDeadLetters(id, id+1); !errors.Is(err, handler.ErrUnknownExchange) {
		t.Fatalf("retry with an unknown ID: %v", err)
	}
	if dls, _ := a.st.DeadLetters(); len(dls) != 1 {
		t.Fatalf("a refused retry changed the dead letters: %+v", dls)
	}
	if err := a.h.RetryDeadLetters(id); err != nil {
		t.Fatal(err)
	}
	rep := tu.Next[*handler.Reply](t, a.h.Events())
	if rep.Exchange != id || string(rep.Data) != "again" || rep.Tag != "7" {
		t.Fatalf("reply %+v", rep)
	}
	o := outcome(t, a.h, id)
	expect(t, o, true, handler.ReasonOK)
	if o.Tag != "7" || o.Attempts != 1 || o.Resumed {
		t.Fatalf("outcome %+v", o)
	}
	if dls, _ := a.st.DeadLetters(); len(dls) != 0 {
		t.Fatalf("dead letters after the retry: %+v", dls)
	}
	if out, _ := a.st.OutgoingList(); len(out) != 0 {
		t.Fatalf("outbox after the retry: %+v", out)
	}
	if err := a.h.RetryDeadLetters(id); !errors.Is(err, handler.ErrUnknownExchange) {
		t.Fatalf("second retry: %v", err)
	}
}

// DropDeadLetters forgets dead letters, all named or none.
func TestDropDeadLetters(t *testing.T) {
	a, b := durablePair(t, handler.WithRetry(1, time.Millisecond, time.Millisecond))
	b.stop()
	id := deadLetter(t, a, b, "")
	if err := a.h.DropDeadLetters(id, id+1); !errors.Is(err, handler.ErrUnknownExchange) {
		t.Fatalf("drop with an unknown ID: %v", err)
	}
	if dls, _ := a.st.DeadLetters(); len(dls) != 1 {
		t.Fatalf("a refused drop changed the dead letters: %+v", dls)
	}
	if err := a.h.DropDeadLetters(id, id); err != nil {
		t.Fatal(err)
	}
	if dls, _ := a.st.DeadLetters(); len(dls) != 0 {
		t.Fatalf("dead letters after the drop: %+v", dls)
	}

	h, _ := pair(t)
	if err := h.DropDeadLetters(id); !errors.Is(err, handler.ErrNoStore) {
		t.Fatalf("drop without a store: %v", err)
	}
	if err := h.RetryDeadLetters(id); !errors.Is(err, handler.ErrNoStore) {
		t.Fatalf("retry without a store: %v", err)
	}
}

// Cancel ends an exchange backing off and one awaiting its reply: Outcome
// cancelled, out of the outbox, not dead-lettered; a reply arriving later
// is ignored and the peer stays usable.
//
// The retry policy is durablePair's quick one: the last request may meet a
// connection the peer is closing (both ends disconnect after an exchange,
// and the peer dialed back to deliver its late reply), and is then resent
// at once rather than an hour later.
func TestCancel(t *testing.T) {
	a, b := durablePair(t)
	down := b.listen
	b.stop()
	backingOff, err := a.h.Request(b.id.ID, down, []byte("x"), handler.WithTag("1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.h.Cancel(backingOff, backingOff+1); !errors.Is(err, handler.ErrUnknownExchange) {
		t.Fatalf("cancel with an unknown ID: %v", err)
	}
	if err := a.h.Cancel(backingOff); err != nil {
		t.Fatal(err)
	}
	o := outcome(t, a.h, backingOff)
	expect(t, o, false, handler.ReasonCancelled)
	if o.DeadLettered || !errors.Is(o.Err, handler.ErrCancelled) || o.Tag != "1" {
		t.Fatalf("outcome %+v", o)
	}
	if err := a.h.Cancel(backingOff); !errors.Is(err, handler.ErrUnknownExchange) {
		t.Fatalf("second cancel: %v", err)
	}

	b.start()
	awaiting, err := a.h.Request(b.id.ID, b.addr(), []byte("y"))
	if err != nil {
		t.Fatal(err)
	}
	req := nextRequest(t, b.h) // delivered: a awaits its ack or the reply
	if err := a.h.Cancel(awaiting); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a.h, awaiting), false, handler.ReasonCancelled)
	_ = b.h.Response(req.From, req.Exchange, []byte("late"))
	tu.None[*handler.Reply](t, a.h.Events(), 100*time.Millisecond)

	if dls, _ := a.st.DeadLetters(); len(dls) != 0 {
		t.Fatalf("cancelled exchanges dead-lettered: %+v", dls)
	}
	if out, _ := a.st.OutgoingList(); len(out) != 0 {
		t.Fatalf("cancelled exchanges left in the outbox: %+v", out)
	}
	echo(t, b.h)
	again, err := a.h.Request(b.id.ID, b.addr(), []byte("z"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a.h, again), true, handler.ReasonOK)
}
