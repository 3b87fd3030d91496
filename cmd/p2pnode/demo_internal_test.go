package main

import (
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
)

// The demo reports an exchange done only after its reply, whichever of
// the two the select took first.
func TestReplyFirst(t *testing.T) {
	var r replyFirst
	early := &handler.Outcome{Exchange: 1, Role: handler.Dialer, OK: true}
	if r.due(early) {
		t.Fatal("an Outcome whose reply is not reported yet is due")
	}
	if o := r.reported(1); o != early {
		t.Fatalf("the reply handed back %v, not the Outcome held for it", o)
	}

	if o := r.reported(2); o != nil {
		t.Fatalf("a reply with no Outcome held handed back %v", o)
	}
	if !r.due(&handler.Outcome{Exchange: 2, Role: handler.Dialer, OK: true}) {
		t.Fatal("an Outcome whose reply was reported is held")
	}
	if !r.due(&handler.Outcome{Exchange: 3, Role: handler.Dialer}) {
		t.Fatal("a failed exchange's Outcome, which has no reply, is held")
	}

	held := &handler.Outcome{Exchange: 4, Role: handler.Dialer, OK: true}
	if r.due(held) {
		t.Fatal("an Outcome whose reply is not reported yet is due")
	}
	if out := r.noMoreReplies(); len(out) != 1 || out[0] != held {
		t.Fatalf("once no reply can come, the Outcomes held are %v, want the one held", out)
	}
	if !r.due(&handler.Outcome{Exchange: 5, Role: handler.Dialer, OK: true}) {
		t.Fatal("an Outcome is held for a reply that cannot come")
	}
}
