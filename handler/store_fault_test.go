package handler_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// errFault is what a faultStore answers while a fault is on.
var errFault = errors.New("test: the disk failed")

// faultStore fails its writes, or its reads of single received
// exchanges, while told to; otherwise it is the store underneath.
type faultStore struct {
	*store.Store
	failWrites atomic.Bool
	failed     atomic.Bool // fails writes as a store failed for good does (store.ErrFailed)
	full       atomic.Bool // refuses batches that add, as a full store does
	failReads  atomic.Bool
	missing    atomic.Bool // reads of received exchanges find none
	stall      atomic.Pointer[commitStall]
}

// commitStall holds a faultStore's Commits (the synchronous writes:
// Response's reply, Ack, Close's last flush) until release is closed;
// entered is closed when the first one waits. Each one held is also sent
// on held, in the order they come (up to its capacity), as a channel whose
// close releases that one alone.
type commitStall struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
	held    chan chan struct{}
}

// stallCommits holds Commits from now until the stall's release.
func (f *faultStore) stallCommits() *commitStall {
	st := &commitStall{entered: make(chan struct{}), release: make(chan struct{}), held: make(chan chan struct{}, 16)}
	f.stall.Store(st)
	return st
}

// next returns the release of the next Commit held, failing t if none
// comes in time.
func (st *commitStall) next(t *testing.T, what string) chan struct{} {
	t.Helper()
	select {
	case one := <-st.held:
		return one
	case <-time.After(tu.Timeout):
		t.Fatalf("no commit held: %s", what)
		return nil
	}
}

func newFaultStore(t *testing.T) *faultStore {
	s, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // after the handler's Close (cleanups run last first)
	return &faultStore{Store: s}
}

func (f *faultStore) Commit(b *store.Batch) error {
	if st := f.stall.Load(); st != nil {
		st.once.Do(func() { close(st.entered) })
		one := make(chan struct{})
		select {
		case st.held <- one:
		default:
		}
		select {
		case <-st.release:
		case <-one:
		}
	}
	if f.failWrites.Load() {
		return errFault
	}
	return f.Store.Commit(b)
}

// CommitAsync is the store's, failing while failWrites, and refusing the
// batches that add while full (Commit does not look at full).
func (f *faultStore) CommitAsync(b *store.Batch, done func(error)) {
	if f.failWrites.Load() {
		done(errFault)
		return
	}
	if f.failed.Load() {
		done(fmt.Errorf("%w: %w", store.ErrFailed, errFault))
		return
	}
	if f.full.Load() && b.Adds() {
		done(fmt.Errorf("test: %w", store.ErrFull))
		return
	}
	f.Store.CommitAsync(b, done)
}

func (f *faultStore) Incoming(peer string, id uint64) (store.Incoming, bool, error) {
	if f.failReads.Load() {
		return store.Incoming{}, false, errFault
	}
	if f.missing.Load() {
		return store.Incoming{}, false, nil
	}
	return f.Store.Incoming(peer, id)
}

// TestCancelFailedWriteChangesNothing: Cancel with a store that cannot
// record the cancellation fails, and, as it says, cancels nothing: the
// exchange goes on in memory as it does on disk. It used to end the
// exchange first and fail after, so the application heard "cancelled"
// (and an error) about an exchange that the next start resumes.
func TestCancelFailedWriteChangesNothing(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	fs := newFaultStore(t)
	h := newHandler(t, ia, list, handler.WithStore(fs), handler.WithRetry(1000, time.Hour, time.Hour))
	// Nobody listens there: the request backs off for an hour.
	id, err := h.Request(ib.ID, ma.StringCast("/ip4/127.0.0.1/tcp/1"), []byte("pay"))
	if err != nil {
		t.Fatal(err)
	}
	if !h.WaitState(id, handler.StateBackoff, tu.Timeout) {
		t.Fatal("the request never backed off")
	}
	fs.failWrites.Store(true)
	if err := h.Cancel(id); !errors.Is(err, handler.ErrNotDurable) {
		t.Fatalf("Cancel on a failing store: %v", err)
	}
	if s := h.Snapshot(); s.Active != 1 {
		t.Fatalf("after a failed Cancel: %+v; the exchange must still run", s)
	}
	if out, _ := fs.OutgoingList(); len(out) != 1 {
		t.Fatalf("outbox after a failed Cancel: %+v", out)
	}
	fs.failWrites.Store(false)
	if err := h.Cancel(id); err != nil {
		t.Fatalf("Cancel once the store works: %v", err)
	}
	expect(t, outcome(t, h, id), false, handler.ReasonCancelled)
	if out, _ := fs.OutgoingList(); len(out) != 0 {
		t.Fatalf("outbox after Cancel: %+v", out)
	}
}

// TestOverflowReadBackFailureRetried: a message the inbox holds and the
// node acked OK, overflowed while the application was behind, must reach
// the application even when reading it back from the store fails once:
// the application hears an Error, and the read is tried again. It used to
// be left where it was, its inbox slot taken, until a restart or a resend
// (which its sender, told OK, never makes).
func TestOverflowReadBackFailureRetried(t *testing.T) {
	overflowReadBack(t, func(fs *faultStore) { fs.failReads.Store(true) }, func(fs *faultStore) { fs.failReads.Store(false) }, true)
}

// TestOverflowReadBackMissingFreesSlot: an overflowed message whose record
// is gone from the store when the loop reads it back (only a dedupe
// record's expiry deletes one) has nothing left to deliver; its inbox slot
// must not stay taken for the rest of the process's life, as it did.
func TestOverflowReadBackMissingFreesSlot(t *testing.T) {
	overflowReadBack(t, func(fs *faultStore) { fs.missing.Store(true) }, func(fs *faultStore) { fs.missing.Store(false) }, false)
}

// overflowReadBack overflows message 4 of a peer, makes reading it back
// fail with fault, and checks that the application hears an Error; then,
// after heal, that it gets message 4 when it is still there (kept), and
// that the peer's inbox has every slot free again.
func overflowReadBack(t *testing.T, fault, heal func(*faultStore), kept bool) {
	ih, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ih, ir)
	fs := newFaultStore(t)
	h := newHandler(t, ih, list, handler.WithStore(fs), func(c *handler.Config) {
		c.KeepConnection = true
		c.EventBuffer, c.MaxBacklog, c.Node.ReceiverBuffer = 1, 1, 1
		c.MaxInboxPerPeer = 5
	})
	r := newRawPeer(t, ir, "127.0.0.1")
	send := func(id handler.ExchangeID) {
		t.Helper()
		if got := r.send(h, envelope(hpb.Kind_KIND_MESSAGE, id, fmt.Appendf(nil, "d%d", id))); got != pb.Reason_OK {
			t.Fatalf("message %d: %v", id, got)
		}
	}
	// The application falls behind: 1 and 2 pause the loop, 3 fills the
	// node's Receiver, and 4 overflows.
	send(1)
	send(2)
	if !h.WaitPaused(tu.Timeout) {
		t.Fatal("the loop never paused")
	}
	send(3)
	send(4)
	fault(fs)
	got := map[handler.ExchangeID]bool{}
	take := func() {
		t.Helper()
		m := tu.Next[*handler.Message](t, h.Events())
		if want := fmt.Sprintf("d%d", m.Exchange); string(m.Data) != want {
			t.Fatalf("message %s delivered with %q, want %q", m.Exchange, m.Data, want)
		}
		if err := h.Ack(m.From, m.Exchange); err != nil {
			t.Fatal(err)
		}
		got[m.Exchange] = true
	}
	for range 3 {
		take()
	}
	e := tu.Next[*handler.Error](t, h.Outcomes())
	if !errors.Is(e.Err, handler.ErrNotDurable) {
		t.Fatalf("error %v", e.Err)
	}
	heal(fs)
	if kept {
		take()
		if !got[4] {
			t.Fatalf("delivered %v", got)
		}
	}
	// Every slot is free again: five more fit the peer's inbox.
	for id := handler.ExchangeID(5); id < 10; id++ {
		send(id)
	}
	for range 5 {
		take()
	}
}

// TestEndNotDurableIsNotHandedOut: when a store that failed for good
// (store.ErrFailed) cannot record the end of a dialer's exchange, its Reply
// and Outcome are held back (an Error says why): the exchange is still in
// the outbox, and the next start resumes it and gives it its one Outcome.
// (They were handed out anyway, and the restart gave the exchange a second
// end.)
func TestEndNotDurableIsNotHandedOut(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	fs := newFaultStore(t)
	a := newHandler(t, ia, list, handler.WithStore(fs))
	b := newNode(t, ib, list)
	id, err := a.Request(ib.ID, b.addr(), []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	r := nextRequest(t, b.h)
	fs.failed.Store(true)
	if err := b.h.Response(r.From, r.Exchange, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	e := tu.Next[*handler.Error](t, a.Outcomes())
	if !errors.Is(e.Err, handler.ErrNotDurable) || !errors.Is(e.Err, store.ErrFailed) {
		t.Fatalf("error %v", e.Err)
	}
	a.Close()
	for _, ch := range []<-chan handler.Event{a.Events(), a.Outcomes()} {
		for ev := range ch {
			t.Errorf("handed out with its end not on disk: %T %+v", ev, ev)
		}
	}
	fs.failed.Store(false)
	a2 := newHandler(t, ia, list, handler.WithStore(fs))
	o := outcome(t, a2, id)
	if !o.OK || !o.Resumed {
		t.Fatalf("after the restart: %+v", o)
	}
	if rep := tu.Next[*handler.Reply](t, a2.Events()); rep.Exchange != id || string(rep.Data) != "pong" {
		t.Fatalf("reply %+v", rep)
	}
}

// TestEndOnFullStoreWithoutDeadLetter: a full store refuses the dead letter
// of an exchange that failed (a write that adds), not the deletion of its
// outbox record: the exchange ends in this life, its Outcome saying it was
// not dead-lettered, and an Error saying why. (Its end was refused whole,
// and the exchange never ended until a restart.)
func TestEndOnFullStoreWithoutDeadLetter(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	fs := newFaultStore(t)
	a := newHandler(t, ia, tu.Allowlist(t, ia, ib), handler.WithStore(fs),
		handler.WithRetry(1, 10*time.Millisecond, 10*time.Millisecond))
	// Full for what the handler writes without waiting (CommitAsync):
	// the exchange's end. Request's own write (Commit) goes through.
	fs.full.Store(true)
	id, err := a.Request(ib.ID, deadAddr(t), []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	e := tu.Next[*handler.Error](t, a.Outcomes())
	if !errors.Is(e.Err, store.ErrFull) || !strings.Contains(e.Err.Error(), "without its dead letter") {
		t.Fatalf("error %v", e.Err)
	}
	o := outcome(t, a, id)
	if o.OK || o.DeadLettered {
		t.Fatalf("outcome %+v: want failed, not dead-lettered", o)
	}
	if err := fs.Commit(&store.Batch{}); err != nil { // the writes before it are through
		t.Fatal(err)
	}
	st, err := fs.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Outgoing) != 0 || len(st.DeadLetters) != 0 {
		t.Fatalf("store after the end: %d outgoing, %d dead letters", len(st.Outgoing), len(st.DeadLetters))
	}
}

// TestCloseSuspendsResponseNotRecorded: a request whose Response had
// claimed it, and whose reply the store then failed to record, as Close's
// deadline ended it, has one end: it is suspended like an unanswered
// request (no Outcome in this life, delivered again at the next start,
// answered there), and Response says its reply was not recorded. It got a
// "closed" Outcome, for a reply not on disk, and then its redelivery ended
// it a second time.
func TestCloseSuspendsResponseNotRecorded(t *testing.T) { responseRecordedAsCloseEnds(t, false) }

// TestCloseEndsResponseRecorded: the same, with the reply recorded: the
// request was answered, and ends "closed" in this life, once, and is not
// delivered again; the requester gets the stored reply. Response returns
// nil: it returned a bare ErrClosed, which says the request comes again at
// the next start, and an application keeping it to answer then waited
// forever.
func TestCloseEndsResponseRecorded(t *testing.T) { responseRecordedAsCloseEnds(t, true) }

// responseRecordedAsCloseEnds has Close's deadline end a request while
// Response waits for the store to record its reply, which it then does,
// or refuses; it checks that Close waits for that answer (the Outcome it
// may owe), then restarts the responder and checks that the request had
// one end, in one of the two lives.
func responseRecordedAsCloseEnds(t *testing.T, recorded bool) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	retry := handler.WithRetry(1000, 10*time.Millisecond, 50*time.Millisecond)
	a := newNode(t, ia, list, retry)
	dir, listen := t.TempDir(), tu.LoopbackAddr(t)
	start := func(s handler.Store) *handler.Handler {
		t.Helper()
		h, err := handler.New(listen, ib.Key, list, fast, handler.WithStore(s), retry)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fs := &faultStore{Store: s}
	b := start(fs)

	id, err := a.h.Request(ib.ID, b.Addrs()[0], []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	r := nextRequest(t, b)
	if r.Exchange != id {
		t.Fatalf("request %+v", r)
	}
	// Response claims the request and waits for the store to record its
	// reply; Close's deadline ends the request meanwhile (the loop exits);
	// then the store records the reply, or refuses it.
	st := fs.stallCommits()
	answered := make(chan error, 1)
	go func() { answered <- b.Response(r.From, r.Exchange, []byte("pong")) }()
	st.next(t, "Response did not write its reply")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = b.Shutdown(ctx)
	}()
	// The teardown's flush comes after the deadline ended the request.
	close(st.next(t, "Close did not flush the store"))
	select {
	case <-closed:
		t.Fatal("Close returned while a Response was recording its reply: the Outcome it may owe is lost")
	case <-time.After(100 * time.Millisecond):
	}
	fs.failWrites.Store(!recorded)
	close(st.release)
	select {
	case err = <-answered:
	case <-time.After(tu.Timeout):
		t.Fatal("Response did not return")
	}
	switch {
	case recorded && err != nil:
		t.Fatalf("Response whose reply was recorded as Close ended the request: %v", err)
	case !recorded && (!errors.Is(err, handler.ErrNotDurable) || !errors.Is(err, handler.ErrClosed) ||
		!strings.Contains(err.Error(), "delivered again at the next start")):
		t.Fatalf("Response whose reply the store refused as Close ended the request: %v", err)
	}
	select {
	case <-closed:
	case <-time.After(tu.Timeout):
		t.Fatal("Close did not return")
	}
	fs.stall.Store(nil)
	fs.failWrites.Store(false)
	var ends []*handler.Outcome
	for ev := range b.Outcomes() {
		if o, ok := ev.(*handler.Outcome); ok && o.Exchange == id {
			ends = append(ends, o)
		}
	}
	switch {
	case recorded && (len(ends) != 1 || ends[0].Reason != handler.ReasonClosed):
		t.Fatalf("outcomes of a request answered as Close ended it: %+v, want one closed", ends)
	case !recorded && len(ends) != 0:
		t.Fatalf("an Outcome for a request whose reply is not on disk: %+v", ends[0])
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	b = start(s)
	t.Cleanup(func() { b.Close() })
	if recorded {
		// The requester's resend gets the stored reply.
		expect(t, outcome(t, a.h, id), true, handler.ReasonOK)
		tu.None[*handler.Request](t, b.Events(), 100*time.Millisecond)
		tu.None[*handler.Outcome](t, b.Outcomes(), 100*time.Millisecond)
		return
	}
	r = nextRequest(t, b)
	if r.Exchange != id || !r.Redelivered {
		t.Fatalf("after the restart: %+v", r)
	}
	if err := b.Response(r.From, r.Exchange, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a.h, id), true, handler.ReasonOK)
	expect(t, outcome(t, b, id), true, handler.ReasonOK)
}
