package main

import (
	"context"
	"errors"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
)

// A request's reply comes with its outcome however the two channels are
// read: here the outcome and, on events, another event before the reply
// are all waiting, and a select takes either channel first.
func TestAwaitOutcomeFindsReplyBehindOtherEvents(t *testing.T) {
	const id = handler.ExchangeID(7)
	for range 32 {
		events := make(chan handler.Event, 2)
		outcomes := make(chan handler.Event, 1)
		events <- &handler.Message{Exchange: 9}
		events <- &handler.Reply{Exchange: id, Data: []byte("answer")}
		outcomes <- &handler.Outcome{Exchange: id, Role: handler.Dialer, Kind: handler.KindRequest, OK: true}
		reply, out, err := awaitOutcome(context.Background(), nil, events, outcomes, id)
		if err != nil || !out.OK || out.Exchange != id {
			t.Fatalf("outcome %+v, %v", out, err)
		}
		if reply == nil || string(reply.Data) != "answer" {
			t.Fatalf("reply %+v: a request that got one printed as acked", reply)
		}
	}
	// A one-way message has no reply to wait for.
	outcomes := make(chan handler.Event, 1)
	outcomes <- &handler.Outcome{Exchange: id, Role: handler.Dialer, Kind: handler.KindMessage, OK: true}
	if reply, out, err := awaitOutcome(context.Background(), nil, make(chan handler.Event), outcomes, id); err != nil || reply != nil || !out.OK {
		t.Fatalf("one-way: %+v, %+v, %v", reply, out, err)
	}
}

// An OK request's outcome carries its reply: Events closing before the
// Reply came (Close drops what does not fit) loses nothing.
func TestAwaitOutcomeReplyFromOutcome(t *testing.T) {
	const id = handler.ExchangeID(7)
	events, outcomes := make(chan handler.Event), make(chan handler.Event)
	r := &handler.Reply{Exchange: id, Data: []byte("answer")}
	type result struct {
		reply *handler.Reply
		out   handler.Outcome
		err   error
	}
	got := make(chan result, 1)
	go func() {
		reply, out, err := awaitOutcome(context.Background(), nil, events, outcomes, id)
		got <- result{reply, out, err}
	}()
	// Unbuffered: the send returns once awaitOutcome has taken it.
	outcomes <- &handler.Outcome{Exchange: id, Role: handler.Dialer, Kind: handler.KindRequest, OK: true, Reply: r}
	close(events)
	if res := <-got; res.err != nil || !res.out.OK || res.reply != r {
		t.Fatalf("reply %+v, outcome %+v, %v", res.reply, res.out, res.err)
	}
}

// TestAwaitOutcomeTakesReplyAfterDeadline: an OK request's reply is queued
// before its outcome is handed out, so a deadline that passes once the
// outcome is read must not report the request unanswered.
func TestAwaitOutcomeTakesReplyAfterDeadline(t *testing.T) {
	const id = handler.ExchangeID(7)
	for range 32 {
		ctx, cancel := context.WithCancel(context.Background())
		events, outcomes := make(chan handler.Event), make(chan handler.Event)
		type result struct {
			reply *handler.Reply
			err   error
		}
		got := make(chan result, 1)
		go func() {
			reply, _, err := awaitOutcome(ctx, nil, events, outcomes, id)
			got <- result{reply, err}
		}()
		// Unbuffered: each send returns once awaitOutcome has taken it.
		outcomes <- &handler.Outcome{Exchange: id, Role: handler.Dialer, Kind: handler.KindRequest, OK: true}
		cancel()
		select {
		case events <- &handler.Reply{Exchange: id, Data: []byte("answer")}:
		case r := <-got:
			t.Fatalf("gave up on the reply after its outcome: %+v, %v", r.reply, r.err)
		}
		if r := <-got; r.err != nil || r.reply == nil {
			t.Fatalf("reply %+v, %v", r.reply, r.err)
		}
	}
	// Before the outcome, the deadline still ends the wait.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := awaitOutcome(ctx, nil, make(chan handler.Event), make(chan handler.Event), id); !errors.Is(err, context.Canceled) {
		t.Fatalf("no outcome before the deadline: %v", err)
	}
}

// After an OK request's outcome, Ctrl-C still ends the wait for its reply.
func TestAwaitOutcomeInterruptedAfterOutcome(t *testing.T) {
	const id = handler.ExchangeID(7)
	ctx, cancel := context.WithCancel(context.Background())
	interrupt := make(chan struct{})
	outcomes := make(chan handler.Event)
	got := make(chan error, 1)
	go func() {
		_, _, err := awaitOutcome(ctx, interrupt, make(chan handler.Event), outcomes, id)
		got <- err
	}()
	// Unbuffered: the send returns once awaitOutcome has the outcome.
	outcomes <- &handler.Outcome{Exchange: id, Role: handler.Dialer, Kind: handler.KindRequest, OK: true}
	cancel()
	close(interrupt)
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted after the outcome: %v", err)
	}
}

// The other way round: a reply read before the deadline, whose outcome is
// read after it, is an answered request too. send --standalone said "no
// answer within --timeout" (exit 1) of it.
func TestAwaitOutcomeTakesOutcomeAfterDeadline(t *testing.T) {
	const id = handler.ExchangeID(7)
	for range 32 {
		ctx, cancel := context.WithCancel(context.Background())
		events, outcomes := make(chan handler.Event), make(chan handler.Event)
		type result struct {
			reply *handler.Reply
			out   handler.Outcome
			err   error
		}
		got := make(chan result, 1)
		go func() {
			reply, out, err := awaitOutcome(ctx, nil, events, outcomes, id)
			got <- result{reply, out, err}
		}()
		// Unbuffered: each send returns once awaitOutcome has taken it.
		events <- &handler.Reply{Exchange: id, Data: []byte("answer")}
		cancel()
		select {
		case outcomes <- &handler.Outcome{Exchange: id, Role: handler.Dialer, Kind: handler.KindRequest, OK: true}:
		case r := <-got:
			t.Fatalf("gave up on the outcome after its reply: %+v, %+v, %v", r.reply, r.out, r.err)
		}
		if r := <-got; r.err != nil || r.reply == nil || !r.out.OK {
			t.Fatalf("reply %+v, outcome %+v, %v", r.reply, r.out, r.err)
		}
	}
}
