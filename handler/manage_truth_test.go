package handler_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// TestSnapshotDoesNotCountCancelledQueued: an exchange cancelled
// while it waits in its peer's queue has ended (its Outcome says so); a
// Snapshot taken afterwards must not count it as queued. The queue keeps
// the ended exchange until pump pops it, which it does only once the
// peer has room, so status and peers reported it queued meanwhile.
func TestSnapshotDoesNotCountCancelledQueued(t *testing.T) {
	a, b := pair(t) // MaxConcurrentPerPeer 1
	first, err := a.Request(b.PeerID(), addr(b), []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	// b's application never answers: first stays active, second queued.
	nextRequest(t, b)
	second, err := a.Request(b.PeerID(), addr(b), []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	if s := a.Snapshot(); s.Queued != 1 {
		t.Fatalf("before the cancel: %+v", s)
	}
	if err := a.Cancel(second); err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a, second), false, handler.ReasonCancelled)
	s := a.Snapshot()
	if s.Queued != 0 || s.Active != 1 || s.Peers[b.PeerID()].Queued != 0 {
		t.Fatalf("after cancelling the queued exchange (first %s still active): %+v", first, s)
	}
}

// TestCancelRefusesAcceptedReply: once our node has acknowledged
// the reply to a request (the responder's Outcome says ok), Cancel must
// not end the request as cancelled and drop the reply: the two sides
// would hold opposite Outcomes, what replyLate and retry take care to
// avoid. The reply waits for a loop paused behind the application.
func TestCancelRefusesAcceptedReply(t *testing.T) {
	a, id := replyAckedWhileBehind(t)
	cerr := a.Cancel(id)
	if cerr == nil {
		o := outcome(t, a, id)
		t.Fatalf("Cancel of a request whose reply our node acked succeeded: a's outcome %s/%v, b's ok", o.Reason, o.OK)
	}
	if !errors.Is(cerr, handler.ErrUnknownExchange) {
		t.Fatalf("cancel: %v", cerr)
	}
	catchUp(t, a, id)
}

// gateStore holds the batches written while hold is set, in order, until
// release: a store whose disk is slow.
type gateStore struct {
	*store.Store
	mu      sync.Mutex
	hold    bool
	held    []func()
	waiting chan struct{} // a Commit (synchronous) waits behind held batches
}

func (g *gateStore) CommitAsync(b *store.Batch, done func(error)) {
	g.mu.Lock()
	if g.hold {
		cp := *b
		g.held = append(g.held, func() { g.Store.CommitAsync(&cp, done) })
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	g.Store.CommitAsync(b, done)
}

func (g *gateStore) Commit(b *store.Batch) error {
	ch := make(chan error, 1)
	g.CommitAsync(b, func(err error) { ch <- err })
	g.mu.Lock()
	held := g.hold
	g.mu.Unlock()
	if held {
		signal(g.waiting)
	}
	return <-ch
}

func (g *gateStore) release() {
	g.mu.Lock()
	g.hold = false
	held := g.held
	g.held = nil
	g.mu.Unlock()
	for _, f := range held {
		f()
	}
}

// TestCancelDurableBeforeReturn: with a store, Cancel (p2pnode
// outbox drop on a running node) must not report the exchange cancelled
// before its removal from the outbox is on disk: a crash in between
// resumes the "cancelled" exchange at the next start and sends it again.
// Request, RetryDeadLetters and DropDeadLetters all wait for their write.
func TestCancelDurableBeforeReturn(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	s, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := &gateStore{Store: s, waiting: make(chan struct{}, 1)}
	t.Cleanup(func() { g.release(); s.Close() })
	h := newHandler(t, ia, list, handler.WithStore(g), handler.WithRetry(1000, time.Hour, time.Hour))
	t.Cleanup(g.release) // before h.Close, which waits for the store
	// Nobody listens there: the request backs off for an hour.
	id, err := h.Request(ib.ID, ma.StringCast("/ip4/127.0.0.1/tcp/1"), []byte("pay"))
	if err != nil {
		t.Fatal(err)
	}
	if !h.WaitState(id, handler.StateBackoff, tu.Timeout) {
		t.Fatal("the request never backed off")
	}
	g.mu.Lock()
	g.hold = true
	g.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- h.Cancel(id) }()
	select {
	case err := <-done:
		out, _ := s.OutgoingList()
		t.Fatalf("Cancel returned (%v) while its outbox removal was not on disk: outbox %d record(s); a crash now resumes the exchange", err, len(out))
	case <-g.waiting:
		g.release()
	case <-time.After(tu.Timeout):
		t.Fatal("Cancel neither returned nor wrote")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if out, _ := s.OutgoingList(); len(out) != 0 {
		t.Fatalf("outbox after Cancel returned: %+v", out)
	}
	expect(t, outcome(t, h, id), false, handler.ReasonCancelled)
}
