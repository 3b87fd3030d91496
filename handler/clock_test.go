package handler_test

import (
	"sync"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// The tests of this file step the wall clock between two lives of a node by
// moving the times its store holds: a record written 1h "later" is what a
// previous life whose clock was 1h ahead left (the clock was set back
// since), one written 1h "earlier" is what a clock stepped forward since
// finds.

// shiftStored moves every time kept in the stopped store at dir by d. With
// createdOnly, only outgoing exchanges' creation times move.
func shiftStored(t *testing.T, dir string, d time.Duration, createdOnly bool) {
	t.Helper()
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	var b store.Batch
	for _, o := range st.Outgoing {
		o.Created = o.Created.Add(d)
		if !createdOnly && !o.Ended.IsZero() {
			o.Ended = o.Ended.Add(d)
		}
		b.PutOutgoing(o)
	}
	for _, in := range st.Incoming {
		if !createdOnly {
			in.Received, in.Updated = in.Received.Add(d), in.Updated.Add(d)
			b.PutIncoming(in)
		}
	}
	if err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
}

// TestDedupeSurvivesClockStepForward: the responder's clock jumped forward
// by more than DedupeTTL while it was down (a VM resumed, a clock corrected
// at boot). Its record of an answered request is kept all the same, so the
// requester's resend is answered from the store, not delivered again.
// Aged by the stored time, the record was deleted at the start and the
// application got the request twice.
func TestDedupeSurvivesClockStepForward(t *testing.T) {
	a, b := durablePair(t)
	id, err := a.h.Request(b.id.ID, b.addr(), []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	r := nextRequest(t, b.h)
	a.crash() // the reply will not reach it: it resends after its restart
	if err := b.h.Response(r.From, r.Exchange, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	b.stop()
	shiftStored(t, b.dir, -(handler.DefaultDedupeTTL + time.Hour), false)
	b.start()
	a.start()
	rep := tu.Next[*handler.Reply](t, a.h.Events())
	if rep.Exchange != id || string(rep.Data) != "pong" {
		t.Fatalf("reply %+v", rep)
	}
	expect(t, outcome(t, a.h, id), true, handler.ReasonOK)
	tu.None[*handler.Request](t, b.h.Events(), 100*time.Millisecond)
}

// goneStore is a store that closes gone once the incoming record (peer, id)
// is no longer on disk after a write.
type goneStore struct {
	*store.Store
	peer string
	id   uint64
	once sync.Once
	gone chan struct{}
}

func (g *goneStore) CommitAsync(b *store.Batch, done func(error)) {
	g.Store.CommitAsync(b, func(err error) {
		if done != nil {
			done(err)
		}
		if _, ok, rerr := g.Store.Incoming(g.peer, g.id); rerr == nil && !ok {
			g.once.Do(func() { close(g.gone) })
		}
	})
}

// TestDedupeRecordFromClockAheadExpires: a previous life whose clock was
// 5 hours ahead left a dedupe record dated 5 hours from now. It is
// forgotten, on disk too, DedupeTTL after the start; kept by its date, it
// stayed for 5 hours more, and held every later record of its peer behind
// it.
func TestDedupeRecordFromClockAheadExpires(t *testing.T) {
	me, other := tu.NewIdentity(t), tu.NewIdentity(t)
	dir := t.TempDir()
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ahead := time.Now().Add(5 * time.Hour)
	var b store.Batch
	b.PutIncoming(store.Incoming{Peer: string(other.ID), ID: 42, Kind: store.KindRequest, State: store.InAnswered,
		Reply: []byte("pong"), Received: ahead, Updated: ahead})
	if err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
	g := &goneStore{Store: s, peer: string(other.ID), id: 42, gone: make(chan struct{})}
	h, err := handler.New(nil, me.Key, tu.Allowlist(t, me, other), fast, handler.WithStore(g),
		func(c *handler.Config) { c.DedupeTTL = 50 * time.Millisecond })
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	defer s.Close()
	defer h.Close()
	// The sweep runs every second at the shortest: a few of them.
	select {
	case <-g.gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the record dated 5h ahead is still in the store 10s after its DedupeTTL (50ms)")
	}
}

// TestResumedDurationAfterClockSetBack: an exchange created by a life
// whose clock was an hour ahead ends, and is handed out again after a
// restart (AckOutcomes), with a duration of at least zero, not minus an
// hour.
func TestResumedDurationAfterClockSetBack(t *testing.T) {
	a, b := durablePair(t, func(c *handler.Config) { c.AckOutcomes = true })
	bAddr := b.addr()
	b.stop()
	id, err := a.h.Request(b.id.ID, bAddr, []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	a.stop()
	shiftStored(t, a.dir, time.Hour, true)
	b.start()
	echo(t, b.h)
	a.start()
	o := outcome(t, a.h, id)
	expect(t, o, true, handler.ReasonOK)
	if !o.Resumed || o.Duration < 0 {
		t.Fatalf("outcome %+v: want resumed, duration >= 0", o)
	}
	a.restart(true) // not acknowledged: handed out again
	o = outcome(t, a.h, id)
	expect(t, o, true, handler.ReasonOK)
	if !o.Redelivered || o.Duration < 0 {
		t.Fatalf("redelivered outcome %+v: want duration >= 0", o)
	}
}
