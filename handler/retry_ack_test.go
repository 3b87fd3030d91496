package handler_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// inOutbox reports whether the store's outbox holds exchange id.
func inOutbox(t *testing.T, s *crashStore, id handler.ExchangeID) bool {
	t.Helper()
	out, err := s.OutgoingList()
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range out {
		if rec.ID == uint64(id) {
			return true
		}
	}
	return false
}

// TestAckOfFirstOutcomeKeepsRetrysOutcome: with AckOutcomes, a dead
// letter retried while its failed Outcome still awaits AckOutcome shares
// its exchange ID with the retry. The retry ends, its record stays in the
// outbox awaiting its own AckOutcome; then the application acknowledges the
// first Outcome, which it has only now dealt with. That ack must not take
// the retry's record: a crash before the retry's own ack would lose its
// Outcome, never handed out again.
func TestAckOfFirstOutcomeKeepsRetrysOutcome(t *testing.T) {
	a, b := durablePair(t, handler.WithRetry(2, time.Millisecond, time.Millisecond),
		func(c *handler.Config) { c.AckOutcomes = true })
	bAddr := b.addr()
	b.stop()
	id, err := a.h.Request(b.id.ID, bAddr, []byte("retry me"), handler.WithTag("5"))
	if err != nil {
		t.Fatal(err)
	}
	if first := outcome(t, a.h, id); first.OK || !first.DeadLettered {
		t.Fatalf("first outcome %+v", first)
	}
	b.start()
	echo(t, b.h)
	if err := a.h.RetryDeadLetters(id); err != nil {
		t.Fatal(err)
	}
	if rep := tu.Next[*handler.Reply](t, a.h.Events()); rep.Exchange != id {
		t.Fatalf("reply %+v", rep)
	}
	expect(t, outcome(t, a.h, id), true, handler.ReasonOK)

	// The application acknowledges the first (failed) Outcome.
	if err := a.h.AckOutcome(id); err != nil {
		t.Fatal(err)
	}
	if !inOutbox(t, a.st, id) {
		t.Fatalf("the ack of %s's first Outcome deleted the retry's ended record, whose Outcome awaits its own ack: a crash now loses it", id)
	}
	a.restart(true) // before the retry's Outcome is acknowledged
	rep := tu.Next[*handler.Reply](t, a.h.Events())
	if rep.Exchange != id || string(rep.Data) != "retry me" || !rep.Redelivered {
		t.Fatalf("reply after the restart %+v", rep)
	}
	o := outcome(t, a.h, id)
	expect(t, o, true, handler.ReasonOK)
	if !o.Redelivered || o.Tag != "5" {
		t.Fatalf("outcome after the restart %+v", o)
	}
	if err := a.h.AckOutcome(id); err != nil {
		t.Fatal(err)
	}
	if err := a.h.AckOutcome(id); !errors.Is(err, handler.ErrUnknownExchange) {
		t.Fatalf("a third ack: %v", err)
	}
	if inOutbox(t, a.st, id) {
		t.Fatalf("exchange %s still in the outbox once its Outcome is acknowledged", id)
	}
}

// TestRetriedExchangeNeedsAckPerOutcome: an exchange retried before its
// failed Outcome was acknowledged keeps its record until both its Outcomes
// are acknowledged, whichever ack comes first, then leaves the store.
func TestRetriedExchangeNeedsAckPerOutcome(t *testing.T) {
	a, b := durablePair(t, handler.WithRetry(2, time.Millisecond, time.Millisecond),
		func(c *handler.Config) { c.AckOutcomes = true })
	bAddr := b.addr()
	b.stop()
	id, err := a.h.Request(b.id.ID, bAddr, []byte("retry me"))
	if err != nil {
		t.Fatal(err)
	}
	outcome(t, a.h, id)
	b.start()
	echo(t, b.h)
	if err := a.h.RetryDeadLetters(id); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a.h, id), true, handler.ReasonOK)
	for i := range 2 {
		if !inOutbox(t, a.st, id) {
			t.Fatalf("after %d of 2 acks: exchange %s gone from the outbox", i, id)
		}
		if err := a.h.AckOutcome(id); err != nil {
			t.Fatalf("ack %d: %v", i+1, err)
		}
	}
	if inOutbox(t, a.st, id) {
		t.Fatalf("exchange %s still in the outbox once both its Outcomes are acknowledged", id)
	}
	if err := a.h.AckOutcome(id); !errors.Is(err, handler.ErrUnknownExchange) {
		t.Fatalf("a third ack: %v", err)
	}
}

// errWholeLoad is what wholeLoadFails answers once the handler runs.
var errWholeLoad = errors.New("test: Load called after start")

// wholeLoadFails is a store whose Load works only while the handler
// starts (resume): RetryDeadLetters and DropDeadLetters must read the dead
// letters they name, not decode the whole store.
type wholeLoadFails struct {
	*store.Store
	started atomic.Bool
}

func (s *wholeLoadFails) Load() (store.State, error) {
	if s.started.Load() {
		return store.State{}, errWholeLoad
	}
	return s.Store.Load()
}

// TestDeadLetterChangesReadOnlyThem: RetryDeadLetters and DropDeadLetters
// look up the dead letters they name; they decoded the whole store (Load)
// for it, inbox and dedupe records included.
func TestDeadLetterChangesReadOnlyThem(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	s, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ws := &wholeLoadFails{Store: s}
	h := newHandler(t, ia, list, handler.WithStore(ws), handler.WithRetry(1, time.Millisecond, time.Millisecond))
	ws.started.Store(true)
	// Nobody listens there: each request fails at once, for good.
	down := ma.StringCast("/ip4/127.0.0.1/tcp/1")
	var ids []handler.ExchangeID
	for range 2 {
		id, err := h.Request(ib.ID, down, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if o := outcome(t, h, id); !o.DeadLettered {
			t.Fatalf("outcome %+v", o)
		}
		ids = append(ids, id)
	}
	unknown := ids[0] ^ ids[1] ^ 1 // neither of them
	if err := h.RetryDeadLetters(ids[0], unknown); !errors.Is(err, handler.ErrUnknownExchange) {
		t.Fatalf("retry with an unknown ID: %v", err)
	}
	if err := h.DropDeadLetters(unknown); !errors.Is(err, handler.ErrUnknownExchange) {
		t.Fatalf("drop of an unknown ID: %v", err)
	}
	if err := h.RetryDeadLetters(ids[0]); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if o := outcome(t, h, ids[0]); !o.DeadLettered || o.Resumed {
		t.Fatalf("outcome of the retry %+v", o)
	}
	if err := h.DropDeadLetters(ids[1]); err != nil {
		t.Fatalf("drop: %v", err)
	}
	dls, err := s.DeadLetters()
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].ID != uint64(ids[0]) {
		t.Fatalf("dead letters %+v, want only %s (retried, failed again)", dls, ids[0])
	}
}

// errDiskHiccup is what failOnce's Commit answers once.
var errDiskHiccup = errors.New("test: the write failed")

// failOnce is a store whose next synchronous Commit, once armed, waits for
// release and then fails without writing.
type failOnce struct {
	*store.Store
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (f *failOnce) Commit(b *store.Batch) error {
	if f.armed.CompareAndSwap(true, false) {
		close(f.entered)
		<-f.release
		return errDiskHiccup
	}
	return f.Store.Commit(b)
}

// TestFailedRetryAfterLastAckDeletesRecord: a retry marks the exchange
// so that an AckOutcome of its failed Outcome leaves the record (to be the
// retry's) alone. If the retry's write then fails, the record is still
// the ended one, and all its Outcomes are acknowledged: it must leave the
// store, or the next start hands out an Outcome acknowledged already.
func TestFailedRetryAfterLastAckDeletesRecord(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	s, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f := &failOnce{Store: s, entered: make(chan struct{}), release: make(chan struct{})}
	h := newHandler(t, ia, list, handler.WithStore(f), handler.WithRetry(1, time.Millisecond, time.Millisecond),
		func(c *handler.Config) { c.AckOutcomes = true })
	id, err := h.Request(ib.ID, ma.StringCast("/ip4/127.0.0.1/tcp/1"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if o := outcome(t, h, id); !o.DeadLettered {
		t.Fatalf("outcome %+v", o)
	}
	f.armed.Store(true)
	retried := make(chan error, 1)
	go func() { retried <- h.RetryDeadLetters(id) }()
	select {
	case <-f.entered:
	case err := <-retried:
		t.Fatalf("RetryDeadLetters returned (%v) without writing", err)
	case <-time.After(tu.Timeout):
		t.Fatal("RetryDeadLetters never wrote")
	}
	if err := h.AckOutcome(id); err != nil {
		t.Fatalf("ack of the failed Outcome during the retry's write: %v", err)
	}
	close(f.release)
	if err := <-retried; !errors.Is(err, handler.ErrNotDurable) || !errors.Is(err, errDiskHiccup) {
		t.Fatalf("retry: %v", err)
	}
	// The store commits in order: once an empty batch is through, so is
	// any write queued before it.
	if err := s.Commit(&store.Batch{}); err != nil {
		t.Fatal(err)
	}
	out, err := s.OutgoingList()
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 0 {
		t.Fatalf("the ended record of %s stays in the outbox (%d records), its Outcome acknowledged: the next start hands it out again", id, len(out))
	}
	if d, ok, err := s.DeadLetter(uint64(id)); err != nil || !ok {
		t.Fatalf("dead letter %s after the failed retry: %+v, %v, %v", id, d, ok, err)
	}
	if err := h.AckOutcome(id); !errors.Is(err, handler.ErrUnknownExchange) {
		t.Fatalf("a second ack: %v", err)
	}
}
