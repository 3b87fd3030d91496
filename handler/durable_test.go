package handler_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// durablePair starts two durable nodes that allowlist each other. They
// resend for as long as a test may take to restart the other (a restart
// under the race detector on a loaded machine takes seconds, longer than
// the fast timings' few attempts); opts may set fewer.
func durablePair(t *testing.T, opts ...handler.Option) (a, b *node) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	opts = append([]handler.Option{handler.WithRetry(1000, 10*time.Millisecond, 50*time.Millisecond)}, opts...)
	return newNode(t, ia, list, opts...), newNode(t, ib, list, opts...)
}

// nextRequest waits for the next Request event.
func nextRequest(t *testing.T, h *handler.Handler) *handler.Request {
	t.Helper()
	return tu.Next[*handler.Request](t, h.Events())
}

// TestRequestSurvivesRequesterCrash: a request accepted by Request is on
// disk; the requester crashes before the responder is even up, and the
// restarted requester completes it with its ID and tag, exactly one Reply
// and one Outcome, marked resumed.
func TestRequestSurvivesRequesterCrash(t *testing.T) {
	a, b := durablePair(t)
	bAddr := b.addr()
	b.stop() // nobody answers

	id, err := a.h.Request(b.id.ID, bAddr, []byte("ping"), handler.WithTag("7"))
	if err != nil {
		t.Fatal(err)
	}
	a.restart(true)
	b.start()
	req := nextRequest(t, b.h)
	if req.Exchange != id || req.Redelivered {
		t.Fatalf("request %+v", req)
	}
	if err := b.h.Response(req.From, req.Exchange, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	rep := tu.Next[*handler.Reply](t, a.h.Events())
	if rep.Exchange != id || string(rep.Data) != "pong" || rep.Tag != "7" {
		t.Fatalf("reply %+v", rep)
	}
	o := outcome(t, a.h, id)
	expect(t, o, true, handler.ReasonOK)
	if !o.Resumed || o.Tag != "7" {
		t.Fatalf("outcome %+v: want resumed, tag 7", o)
	}
	// It ended: a third life has nothing to resume.
	a.restart(false)
	tu.None[*handler.Outcome](t, a.h.Outcomes(), 100*time.Millisecond)
}

// TestCloseSuspendsDurableExchanges: with a store, Close is no end: an
// exchange still running gets no Outcome "closed", and resumes at the next
// start with its one Outcome.
func TestCloseSuspendsDurableExchanges(t *testing.T) {
	a, b := durablePair(t)
	bAddr := b.addr()
	b.stop()
	id, err := a.h.Request(b.id.ID, bAddr, []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	h := a.h
	a.stop()
	for ev := range h.Outcomes() {
		if o, ok := ev.(*handler.Outcome); ok {
			t.Fatalf("outcome at close: %+v", o)
		}
	}
	b.start()
	echo(t, b.h)
	a.start()
	expect(t, outcome(t, a.h, id), true, handler.ReasonOK)
}

// TestCloseSuspendsUnansweredRequests: with a store, a request received
// and not yet answered when the responder closes gets no Outcome "closed":
// it stays pending, is delivered again at the next start, and its one
// Outcome comes once it is answered there. (Its responder used to report
// it failed "closed", then ok after the restart: two ends of one exchange.)
func TestCloseSuspendsUnansweredRequests(t *testing.T) {
	a, b := durablePair(t)
	id, err := a.h.Request(b.id.ID, b.addr(), []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	if r := nextRequest(t, b.h); r.Exchange != id {
		t.Fatalf("request %+v", r)
	}
	h := b.h
	b.stop()
	for ev := range h.Outcomes() {
		if o, ok := ev.(*handler.Outcome); ok {
			t.Fatalf("responder outcome at close: %+v", o)
		}
	}
	b.start()
	r := nextRequest(t, b.h)
	if r.Exchange != id || !r.Redelivered {
		t.Fatalf("after the restart: %+v", r)
	}
	if err := b.h.Response(r.From, r.Exchange, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a.h, id), true, handler.ReasonOK)
	expect(t, outcome(t, b.h, id), true, handler.ReasonOK)
}

// TestResponseAfterCloseEndedRequest: a Response to a request that Close
// ended unanswered fails ErrClosed, saying the request comes again, not
// "unknown exchange" as if the application had named a wrong one; the
// request is delivered again at the next start.
func TestResponseAfterCloseEndedRequest(t *testing.T) {
	a, b := durablePair(t)
	id, err := a.h.Request(b.id.ID, b.addr(), []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	r := nextRequest(t, b.h)
	if !b.h.EndClosed(r.From, r.Exchange) {
		t.Fatal("no such request held")
	}
	err = b.h.Response(r.From, r.Exchange, []byte("pong"))
	if !errors.Is(err, handler.ErrClosed) || errors.Is(err, handler.ErrUnknownExchange) ||
		!strings.Contains(err.Error(), "delivered again at the next start") {
		t.Fatalf("Response after Close ended the request: %v", err)
	}
	b.restart(false)
	r = nextRequest(t, b.h)
	if r.Exchange != id || !r.Redelivered {
		t.Fatalf("after the restart: %+v", r)
	}
	if err := b.h.Response(r.From, r.Exchange, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a.h, id), true, handler.ReasonOK)
}

// TestResponseAfterCloseEndedRequestEphemeral: without a store the
// request ends there ("closed"), and Response says the close is why.
func TestResponseAfterCloseEndedRequestEphemeral(t *testing.T) {
	a, b := pair(t)
	id, err := a.Request(b.PeerID(), addr(b), []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	r := nextRequest(t, b)
	if !b.EndClosed(r.From, r.Exchange) {
		t.Fatal("no such request held")
	}
	expect(t, outcome(t, b, id), false, handler.ReasonClosed)
	err = b.Response(r.From, r.Exchange, []byte("pong"))
	if !errors.Is(err, handler.ErrClosed) || strings.Contains(err.Error(), "delivered again") {
		t.Fatalf("Response after Close ended the request: %v", err)
	}
}

// TestRedeliveryAfterResponderCrash: a request stored and acknowledged,
// whose application died before answering, is delivered again after the
// restart, marked redelivered, and the requester gets its one reply.
func TestRedeliveryAfterResponderCrash(t *testing.T) {
	a, b := durablePair(t)
	id, err := a.h.Request(b.id.ID, b.addr(), []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	if r := nextRequest(t, b.h); r.Exchange != id {
		t.Fatalf("request %+v", r)
	}
	b.restart(true) // the application never answered
	r := nextRequest(t, b.h)
	if r.Exchange != id || !r.Redelivered || string(r.Data) != "ping" {
		t.Fatalf("redelivered %+v", r)
	}
	if err := b.h.Response(r.From, r.Exchange, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a.h, id), true, handler.ReasonOK)
	tu.None[*handler.Request](t, b.h.Events(), 100*time.Millisecond)
}

// TestAnsweredRequestNotDeliveredAgain: once Response returned, neither a
// resend nor a restart of either side delivers the request again; a
// resent request is answered with the stored reply.
func TestAnsweredRequestNotDeliveredAgain(t *testing.T) {
	a, b := durablePair(t)
	id, err := a.h.Request(b.id.ID, b.addr(), []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	r := nextRequest(t, b.h)
	// The requester dies before the reply can reach it.
	a.crash()
	if err := b.h.Response(r.From, r.Exchange, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	b.restart(true)
	a.start()
	rep := tu.Next[*handler.Reply](t, a.h.Events())
	if rep.Exchange != id || string(rep.Data) != "pong" {
		t.Fatalf("reply %+v", rep)
	}
	expect(t, outcome(t, a.h, id), true, handler.ReasonOK)
	tu.None[*handler.Request](t, b.h.Events(), 100*time.Millisecond)
}

// TestMessageKeptUntilAcked: a one-way message stays in the store until the
// application acknowledges it: delivered again after a crash, not after
// an Ack.
func TestMessageKeptUntilAcked(t *testing.T) {
	a, b := durablePair(t)
	id, err := a.h.Send(b.id.ID, b.addr(), []byte("note"))
	if err != nil {
		t.Fatal(err)
	}
	m := tu.Next[*handler.Message](t, b.h.Events())
	if m.Exchange != id || m.Redelivered {
		t.Fatalf("message %+v", m)
	}
	expect(t, outcome(t, a.h, id), true, handler.ReasonOK)
	b.restart(true)
	m = tu.Next[*handler.Message](t, b.h.Events())
	if m.Exchange != id || !m.Redelivered || string(m.Data) != "note" {
		t.Fatalf("redelivered %+v", m)
	}
	if err := b.h.Ack(m.From, m.Exchange); err != nil {
		t.Fatal(err)
	}
	if err := b.h.Ack(m.From, m.Exchange); !errors.Is(err, handler.ErrUnknownExchange) {
		t.Fatalf("second ack: %v", err)
	}
	b.restart(true)
	tu.None[*handler.Message](t, b.h.Events(), 100*time.Millisecond)
}

// TestDeadLetters: an exchange that fails finally is kept in the store's
// dead letters with its reason and payload, and its Outcome says so.
func TestDeadLetters(t *testing.T) {
	a, b := durablePair(t, handler.WithRetry(2, time.Millisecond, time.Millisecond))
	bAddr := b.addr()
	b.stop()
	id, err := a.h.Request(b.id.ID, bAddr, []byte("lost"), handler.WithTag("9"))
	if err != nil {
		t.Fatal(err)
	}
	o := outcome(t, a.h, id)
	expect(t, o, false, handler.ReasonDialFailed)
	if !o.DeadLettered {
		t.Fatalf("outcome %+v: not dead-lettered", o)
	}
	dls, err := a.st.DeadLetters()
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].ID != uint64(id) || dls[0].Reason != string(handler.ReasonDialFailed) ||
		!bytes.Equal(dls[0].Payload, []byte("lost")) || dls[0].Tag != "9" || dls[0].Attempts != 2 {
		t.Fatalf("dead letters %+v", dls)
	}
	// Nothing left to resume.
	a.restart(false)
	tu.None[*handler.Outcome](t, a.h.Outcomes(), 100*time.Millisecond)
}

// TestCallerMayReuseItsBuffer: Request keeps its own copy of the payload.
// A caller that reuses its buffer once Request returned changes neither
// what is resent nor what the store keeps: the attempt count written with
// the second attempt and the dead letter hold the payload as it was.
func TestCallerMayReuseItsBuffer(t *testing.T) {
	a, b := durablePair(t, handler.WithRetry(2, time.Millisecond, time.Millisecond))
	bAddr := b.addr()
	b.stop()
	buf := []byte("lost")
	id, err := a.h.Request(b.id.ID, bAddr, buf)
	if err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXX")
	expect(t, outcome(t, a.h, id), false, handler.ReasonDialFailed)
	dls, err := a.st.DeadLetters()
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || !bytes.Equal(dls[0].Payload, []byte("lost")) {
		t.Fatalf("dead letters %+v: want the payload \"lost\"", dls)
	}
}

// TestFullStoreRefusesRequests: a full store is backpressure: Request fails
// with an error naming it, instead of accepting what it cannot keep.
func TestFullStoreRefusesRequests(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	s, err := store.Open(t.TempDir(), store.Options{MaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h := newHandler(t, ia, list, handler.WithStore(s))
	other := newHandler(t, ib, list)
	payload := bytes.Repeat([]byte("x"), 8<<10)
	for i := range 1000 {
		_, err := h.Request(ib.ID, addr(other), payload)
		if err == nil {
			continue
		}
		if !errors.Is(err, store.ErrFull) || !errors.Is(err, handler.ErrNotDurable) {
			t.Fatalf("request %d: %v", i, err)
		}
		return
	}
	t.Fatal("the store never filled")
}

// TestStaleReplyIsNoMisbehaviour: a requester restarted without a store
// gets the reply its previous process asked for. It refuses it as an
// unknown exchange, without judging the honest responder faulty or
// spending its tokens, and its own exchanges go on.
func TestStaleReplyIsNoMisbehaviour(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	keep := handler.WithKeepConnection(true)
	// A reply refused as unknown waits for a resend of its request until
	// the reply timeout.
	b := newHandler(t, ib, list, keep, handler.WithReplyTimeout(3*time.Second))
	// b reaches the restarted process at the address identify told it.
	identifiedA := identified(t, b, ia.ID)
	listen := tu.LoopbackAddr(t) // a2 comes up on it again
	a1, err := handler.New(listen, ia.Key, list, fast, keep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a1.Close() })
	if _, err := a1.Request(ib.ID, addr(b), []byte("old")); err != nil {
		t.Fatal(err)
	}
	old := nextRequest(t, b)
	identifiedA()
	a1.Close()
	a2, err := handler.New(listen, ia.Key, list, fast, keep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a2.Close() })
	// b answers the old request: the reply reaches the new process.
	if err := b.Response(old.From, old.Exchange, []byte("stale")); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, b, old.Exchange), false, handler.ReasonUnknownExchange)
	id, err := a2.Request(ib.ID, addr(b), []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	fresh := nextRequest(t, b)
	if err := b.Response(fresh.From, fresh.Exchange, []byte("fresh")); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a2, id), true, handler.ReasonOK)
	tu.None[*handler.Error](t, a2.Outcomes(), 50*time.Millisecond)
	if keys := a2.Node().Limiter().Stats().Peers.Keys; keys != 0 {
		t.Fatalf("the honest responder was charged (%d keys)", keys)
	}
}

// TestProcessesSharingAKey: two processes with one key ask one responder
// at once; each gets its own replies (a reply goes back on the connection
// its request came from), none is refused or charged.
func TestProcessesSharingAKey(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	b := newHandler(t, ib, list)
	echo(t, b)
	const each = 8
	var hs [2]*handler.Handler
	var ids [2][]handler.ExchangeID
	for who := range hs {
		hs[who] = newHandler(t, ia, list, handler.WithMaxConcurrentPerPeer(each))
	}
	for i := range each {
		for who, a := range hs {
			id, err := a.Request(ib.ID, addr(b), fmt.Appendf(nil, "%d-%d", who, i))
			if err != nil {
				t.Fatal(err)
			}
			ids[who] = append(ids[who], id)
		}
	}
	for who, a := range hs {
		want := make(map[handler.ExchangeID]bool)
		for _, id := range ids[who] {
			want[id] = true
		}
		for len(want) > 0 {
			var o *handler.Outcome
			select {
			case ev := <-a.Outcomes():
				var ok bool
				if o, ok = ev.(*handler.Outcome); !ok {
					t.Logf("process %d: %T %+v", who, ev, ev) // an Error: it may tell why
					continue
				}
			case <-time.After(tu.Timeout):
				// What each side still holds says where an exchange
				// stalled. Seen under load before replies refused by the
				// other process were resent to a dialer that had asked
				// again meanwhile (TestRequestAgainWhileReplyAstray).
				t.Fatalf("process %d: no Outcome within %s for %d exchanges; process 0 %+v, process 1 %+v, responder %+v",
					who, tu.Timeout, len(want), hs[0].Snapshot(), hs[1].Snapshot(), b.Snapshot())
			}
			if !want[o.Exchange] {
				t.Fatalf("process %d: outcome of another's exchange: %+v", who, o)
			}
			delete(want, o.Exchange)
			if !o.OK {
				t.Errorf("process %d: %+v", who, o)
			}
		}
		if keys := a.Node().Limiter().Stats().Peers.Keys; keys != 0 {
			t.Errorf("process %d charged the responder (%d keys)", who, keys)
		}
	}
}

// TestCrashPoints crashes the requester, then the responder, at each of
// their store writes in turn (requester: the request accepted, its end
// recorded; responder: the request received, the reply recorded), restarts
// it, and checks the
// promise: the request ends in exactly one Outcome, OK; the responder's
// application never sees it again once it answered, and sees it again
// after a restart only marked Redelivered.
func TestCrashPoints(t *testing.T) {
	for _, requester := range []bool{true, false} {
		for at := 1; at <= 2; at++ {
			name := fmt.Sprintf("responder/write%d", at)
			if requester {
				name = fmt.Sprintf("requester/write%d", at)
			}
			t.Run(name, func(t *testing.T) { crashPoint(t, requester, at) })
		}
	}
}

func crashPoint(t *testing.T, requester bool, at int) {
	a, b := durablePair(t, handler.WithRetry(1000, 10*time.Millisecond, 50*time.Millisecond))
	victim := b
	if requester {
		victim = a
	}
	victim.st.crashAtCommit(at)
	id, err := a.h.Request(b.id.ID, b.addr(), []byte("ping"))
	if err != nil {
		if requester && at == 1 && errors.Is(err, handler.ErrNotDurable) {
			// Not accepted, so not sent: nothing may arrive.
			tu.None[*handler.Request](t, b.h.Events(), 100*time.Millisecond)
			return
		}
		t.Fatal(err)
	}
	var (
		outcomes  []*handler.Outcome
		answered  bool // a Response to the request returned nil
		delivered int  // deliveries in b's current life
		restarted bool
	)
	deadline := time.After(tu.Timeout)
	for len(outcomes) == 0 {
		select {
		case <-victim.st.died:
			if restarted {
				t.Fatal("crashed twice")
			}
			restarted = true
			victim.restart(true)
			if victim == b {
				delivered = 0
			}
		case ev := <-b.h.Events():
			r, ok := ev.(*handler.Request)
			if !ok || b.st.isDead() {
				continue // after the crash: as if it never happened
			}
			delivered++
			switch {
			case answered:
				t.Fatalf("delivered again after it was answered: %+v", r)
			case delivered > 1:
				t.Fatalf("delivered twice in one life: %+v", r)
			case restarted && victim == b && !r.Redelivered:
				// Delivered in a new life: only if the old one never
				// stored it (the crash was at that write).
				if at != 1 {
					t.Fatalf("delivered after a restart without Redelivered: %+v", r)
				}
			}
			if b.h.Response(r.From, r.Exchange, []byte("pong")) == nil && !b.st.isDead() {
				answered = true
			}
		case ev := <-a.h.Outcomes():
			if o, ok := ev.(*handler.Outcome); ok && o.Exchange == id && !a.st.isDead() {
				outcomes = append(outcomes, o)
			}
		case <-deadline:
			t.Fatalf("no outcome within %s (restarted: %v, answered: %v)", tu.Timeout, restarted, answered)
		}
	}
	expect(t, outcomes[0], true, handler.ReasonOK)
	if !restarted {
		t.Fatal("the crash point was never reached")
	}
	// Exactly one: neither this life nor the next has another.
	tu.None[*handler.Outcome](t, a.h.Outcomes(), 50*time.Millisecond)
	a.restart(false)
	tu.None[*handler.Outcome](t, a.h.Outcomes(), 100*time.Millisecond)
}

// TestOutcomeKeptUntilAcked: with AckOutcomes, an exchange's Reply and
// Outcome are handed out again after a restart until the application
// acknowledges them, marked Redelivered, and never after.
func TestOutcomeKeptUntilAcked(t *testing.T) {
	a, b := durablePair(t, func(c *handler.Config) { c.AckOutcomes = true })
	echo(t, b.h)
	id, err := a.h.Request(b.id.ID, b.addr(), []byte("ping"), handler.WithTag("3"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a.h, id), true, handler.ReasonOK)
	// The application dies before it has dealt with the outcome.
	a.restart(true)
	rep := tu.Next[*handler.Reply](t, a.h.Events())
	if rep.Exchange != id || string(rep.Data) != "ping" || !rep.Redelivered || rep.Tag != "3" {
		t.Fatalf("reply %+v", rep)
	}
	o := outcome(t, a.h, id)
	expect(t, o, true, handler.ReasonOK)
	if !o.Redelivered || !o.Resumed || o.Tag != "3" {
		t.Fatalf("outcome %+v", o)
	}
	if err := a.h.AckOutcome(id); err != nil {
		t.Fatal(err)
	}
	if err := a.h.AckOutcome(id); !errors.Is(err, handler.ErrUnknownExchange) {
		t.Fatalf("second ack: %v", err)
	}
	a.restart(true)
	tu.None[*handler.Outcome](t, a.h.Outcomes(), 100*time.Millisecond)
}

// TestInboxBoundedPerPeer: a peer whose messages the application has not
// handled yet is answered busy past MaxInboxPerPeer, and resends later; the
// others' messages still get through, so one peer cannot fill the inbox
// (and the disk) that the others need.
func TestInboxBoundedPerPeer(t *testing.T) {
	ia, ib, ic := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib, ic)
	retry := handler.WithRetry(2, time.Millisecond, time.Millisecond)
	b := newNode(t, ib, list, func(c *handler.Config) { c.MaxInboxPerPeer = 2 })
	a := newHandler(t, ia, list, retry, handler.WithMaxConcurrentPerPeer(3))
	c := newHandler(t, ic, list, retry)
	var ids []handler.ExchangeID
	for i := range 3 {
		id, err := a.Send(ib.ID, b.addr(), fmt.Appendf(nil, "a%d", i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	got := map[bool]int{}
	for _, id := range ids {
		o := outcome(t, a, id)
		got[o.OK]++
		if !o.OK && o.Reason != handler.ReasonNotAcked {
			t.Fatalf("outcome %+v", o)
		}
	}
	if got[true] != 2 || got[false] != 1 {
		t.Fatalf("outcomes ok/failed %d/%d, want 2/1", got[true], got[false])
	}
	id, err := c.Send(ib.ID, b.addr(), []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, c, id), true, handler.ReasonOK)
	// Handling one makes room for the peer again.
	m := tu.NextMatch(t, b.h.Events(), func(m *handler.Message) bool { return m.From == ia.ID })
	if err := b.h.Ack(m.From, m.Exchange); err != nil {
		t.Fatal(err)
	}
	id, err = a.Send(ib.ID, b.addr(), []byte("again"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a, id), true, handler.ReasonOK)
}

// TestAckOutcomeAfterRetryKeepsTheRetry: with AckOutcomes, an
// application that deals with a dead-lettered Outcome by retrying the dead
// letter, and then acknowledges the Outcome, must not lose the retried
// exchange: it runs, so it must stay in the outbox (promise 1), and resume
// after a crash.
func TestAckOutcomeAfterRetryKeepsTheRetry(t *testing.T) {
	a, b := durablePair(t, handler.WithRetry(2, time.Millisecond, time.Millisecond),
		func(c *handler.Config) { c.AckOutcomes = true })
	bAddr := b.addr()
	b.stop()
	id, err := a.h.Request(b.id.ID, bAddr, []byte("retry me"))
	if err != nil {
		t.Fatal(err)
	}
	o := outcome(t, a.h, id)
	if o.OK || !o.DeadLettered {
		t.Fatalf("outcome %+v", o)
	}
	b.start()
	if err := a.h.RetryDeadLetters(id); err != nil {
		t.Fatal(err)
	}
	// The retried request reached b, whose application has not answered:
	// a's exchange is running, awaiting its reply.
	if r := nextRequest(t, b.h); r.Exchange != id {
		t.Fatalf("request %+v", r)
	}
	if !a.h.WaitState(id, handler.StateAwaitReply, tu.Timeout) {
		t.Fatal("the retried request does not await its reply")
	}
	// Now the application acknowledges the first Outcome: one of the two
	// the exchange will have.
	if err := a.h.AckOutcome(id); err != nil {
		t.Fatal(err)
	}
	out, err := a.st.OutgoingList()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rec := range out {
		found = found || rec.ID == uint64(id)
	}
	if !found {
		t.Fatalf("the retried exchange %s, still running, is no longer in the outbox (%d records): a crash loses it", id, len(out))
	}
}

// TestRedeliveredCancelledOutcomeNotDeadLettered: a cancelled
// exchange is not dead-lettered; its Outcome handed out again after a
// restart (AckOutcomes) must not say it was.
func TestRedeliveredCancelledOutcomeNotDeadLettered(t *testing.T) {
	a, b := durablePair(t, func(c *handler.Config) { c.AckOutcomes = true })
	bAddr := b.addr()
	b.stop()
	id, err := a.h.Request(b.id.ID, bAddr, []byte("cancel me"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.h.Cancel(id); err != nil {
		t.Fatal(err)
	}
	o := outcome(t, a.h, id)
	expect(t, o, false, handler.ReasonCancelled)
	if o.DeadLettered {
		t.Fatalf("outcome %+v: dead-lettered", o)
	}
	a.restart(true) // before AckOutcome
	o = outcome(t, a.h, id)
	expect(t, o, false, handler.ReasonCancelled)
	dls, err := a.st.DeadLetters()
	if err != nil {
		t.Fatal(err)
	}
	if !o.Redelivered || o.DeadLettered {
		t.Fatalf("redelivered outcome %+v: DeadLettered=%v, the dead letters hold %d", o, o.DeadLettered, len(dls))
	}
}

// behindReceiver starts a durable receiver whose application channel,
// backlog and node Receiver hold one item each, so that an application
// that does not read leaves no room after the first, and a sender with one
// attempt per exchange (a busy answer would fail its Outcome) and up to 8
// exchanges in flight. Both keep their connection: with one attempt, a
// new connection of the sender's that the receiver's automatic
// disconnection (after the exchange before) closes as it comes up would
// fail an exchange for a reason that is not this test's.
func behindReceiver(t *testing.T) (sender *handler.Handler, b *node) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	b = newNode(t, ib, list, func(c *handler.Config) {
		c.EventBuffer, c.MaxBacklog, c.Node.ReceiverBuffer = 1, 1, 1
		c.KeepConnection = true
	})
	return newHandler(t, ia, list, handler.WithRetry(1, time.Millisecond, time.Millisecond),
		func(c *handler.Config) { c.MaxConcurrentPerPeer, c.KeepConnection = 8, true }), b
}

// TestStoredMessageNotRefusedWhenBehind: a message the inbox holds is
// taken, however far behind the application is: its sender hears OK, not
// busy (which would say it was refused, and the next start would deliver
// it anyway), and the application gets every one, once, when it catches
// up; a restart then delivers none again.
func TestStoredMessageNotRefusedWhenBehind(t *testing.T) {
	a, b := behindReceiver(t)
	const n = 8
	sent := map[handler.ExchangeID]bool{}
	for i := range n {
		id, err := a.Send(b.id.ID, b.addr(), fmt.Appendf(nil, "m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		expect(t, outcome(t, a, id), true, handler.ReasonOK)
		sent[id] = true
	}
	// The application catches up.
	for range n {
		m := tu.Next[*handler.Message](t, b.h.Events())
		if !sent[m.Exchange] || m.Redelivered {
			t.Fatalf("message %+v: not one of %v once", m, sent)
		}
		delete(sent, m.Exchange)
		if err := b.h.Ack(m.From, m.Exchange); err != nil {
			t.Fatal(err)
		}
	}
	b.restart(false)
	tu.None[*handler.Message](t, b.h.Events(), 100*time.Millisecond)
}

// TestStoredRequestNotRefusedWhenBehind: the same for requests, answered
// once the application catches up, on the streams they came on.
func TestStoredRequestNotRefusedWhenBehind(t *testing.T) {
	a, b := behindReceiver(t)
	const n = 8
	ids := make([]handler.ExchangeID, n)
	for i := range ids {
		id, err := a.Request(b.id.ID, b.addr(), fmt.Appendf(nil, "r%d", i))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	for range n {
		r := nextRequest(t, b.h)
		if r.Redelivered {
			t.Fatalf("request %+v", r)
		}
		if err := b.h.Response(r.From, r.Exchange, append([]byte("re:"), r.Data...)); err != nil {
			t.Fatal(err)
		}
	}
	want := map[handler.ExchangeID]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for range n {
		o := tu.Next[*handler.Outcome](t, a.Outcomes())
		if !want[o.Exchange] {
			t.Fatalf("outcome %+v: not one of %v once", o, want)
		}
		delete(want, o.Exchange)
		expect(t, o, true, handler.ReasonOK)
	}
}
