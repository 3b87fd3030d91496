package handler_test

import (
	"errors"
	"fmt"
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
	failReads  atomic.Bool
	missing    atomic.Bool // reads of received exchanges find none
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
	if f.failWrites.Load() {
		return errFault
	}
	return f.Store.Commit(b)
}

func (f *faultStore) CommitAsync(b *store.Batch, done func(error)) {
	if f.failWrites.Load() {
		done(errFault)
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
