package main

import (
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
)

// An outcome is printed only after its reply, whichever of the two the
// select took first.
func TestReplyOrder(t *testing.T) {
	var q replyOrder
	early := handler.Outcome{Exchange: 1, Role: handler.Dialer, Kind: handler.KindRequest, OK: true}
	if q.ended(early) {
		t.Fatal("an outcome whose reply is not printed yet may be printed")
	}
	if o, ok := q.replied(1); !ok || o != early {
		t.Fatalf("the reply handed back %v, %v, not the outcome kept for it", o, ok)
	}
	if _, ok := q.replied(2); ok {
		t.Fatal("a reply with no outcome kept handed one back")
	}
	if !q.ended(handler.Outcome{Exchange: 2, Role: handler.Dialer, Kind: handler.KindRequest, OK: true}) {
		t.Fatal("an outcome whose reply was printed is kept")
	}
	if len(q.printed) != 0 || len(q.waiting) != 0 {
		t.Fatalf("exchanges printed in full are still held: %v, %v", q.printed, q.waiting)
	}
}

// An outcome whose reply the handler's Close dropped is handed back, with
// the reply it carries, once Events has closed.
func TestReplyOrderUnpaired(t *testing.T) {
	var q replyOrder
	for _, id := range []handler.ExchangeID{3, 1} {
		r := &handler.Reply{Exchange: id, Data: []byte("answer")}
		if q.ended(handler.Outcome{Exchange: id, Role: handler.Dialer, Kind: handler.KindRequest, OK: true, Reply: r}) {
			t.Fatal("an outcome whose reply is not printed yet may be printed")
		}
	}
	got := q.unpaired()
	if len(got) != 2 || got[0].Exchange != 1 || got[1].Exchange != 3 || got[0].Reply == nil || got[0].Reply.Exchange != 1 {
		t.Fatalf("unpaired %+v", got)
	}
	if len(q.waiting) != 0 || len(q.unpaired()) != 0 {
		t.Fatalf("handed back twice: %v", q.waiting)
	}
}
