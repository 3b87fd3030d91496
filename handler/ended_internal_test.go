package handler

import (
	"testing"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// An envelope goes back to the pool (where yamux and Noise take buffers
// too) only when nothing can read it again; put back any earlier, its
// bytes could be rewritten for another exchange while a write of ours, or
// a resend, still sends them to this peer.
func TestFreeWireOnlyWhenNothingReadsIt(t *testing.T) {
	h, _ := idle(t)
	done := func() *exchange {
		return &exchange{state: StateDone, attempts: 1, sentOK: true, wire: []byte("envelope")}
	}
	for _, tc := range []struct {
		name    string
		change  func(*exchange)
		durable bool
		freed   bool
	}{
		{"done after one acked send", func(*exchange) {}, false, true},
		{"failed", func(ex *exchange) { ex.state = StateFailed }, false, false},
		// An earlier send failed: its write may still be unwinding in
		// the node (p2p.SendMsg.Data), and the resend carried the same
		// bytes.
		{"sent twice", func(ex *exchange) { ex.attempts = 2 }, false, false},
		// The reply came (by another connection) before the request's
		// ack, or after its send failed.
		{"no OK Status", func(ex *exchange) { ex.sentOK = false }, false, false},
		{"a Status still to come", func(ex *exchange) { ex.msgID = 7 }, false, false},
		// The store's batch may still hold the bytes.
		{"durable", func(*exchange) {}, true, false},
		// Not from the pool (encode): it would land in a smaller class.
		{"large", func(ex *exchange) { ex.wire = make([]byte, maxPooledEnvelope+1) }, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.cfg.Store = nil
			if tc.durable {
				h.cfg.Store = nopStore{}
			}
			ex := done()
			tc.change(ex)
			h.freeWire(ex)
			if freed := ex.wire == nil; freed != tc.freed {
				t.Fatalf("freed %v, want %v", freed, tc.freed)
			}
		})
	}
	h.cfg.Store = nil
}

// nopStore makes a handler durable for freeWire; nothing calls it.
type nopStore struct{}

func (nopStore) Commit(*store.Batch) error                    { return nil }
func (nopStore) CommitAsync(_ *store.Batch, done func(error)) { done(nil) }
func (nopStore) Load() (store.State, error)                   { return store.State{}, nil }
func (nopStore) DeadLetter(uint64) (store.DeadLetter, bool, error) {
	return store.DeadLetter{}, false, nil
}
func (nopStore) Incoming(string, uint64) (store.Incoming, bool, error) {
	return store.Incoming{}, false, nil
}

// An ended exchange keeps only what its events need: an application may
// keep an Outcome, and with it the state it lives in, for as long as it
// likes.
func TestEndedExchangeLetsGo(t *testing.T) {
	h, other := idle(t)
	ex := h.receive(h.peer(other.ID), 7, p2p.Origin{})
	ex.wire, ex.msg = []byte("reply envelope"), []byte("payload")
	ex.addr, ex.extra = ma.StringCast("/ip4/127.0.0.1/tcp/1"), []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/2")}
	h.end(ex, ReasonReplyTimeout, nil)
	if ex.wire != nil || ex.msg != nil || ex.addr != nil || ex.extra != nil || ex.origin != (p2p.Origin{}) {
		t.Fatalf("ended exchange still holds wire %v, msg %v, addr %v, extra %v", ex.wire, ex.msg, ex.addr, ex.extra)
	}
	if ex.outcome.Reason != ReasonReplyTimeout {
		t.Fatalf("outcome %+v", ex.outcome)
	}
}
