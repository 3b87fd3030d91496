package p2p_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// takeRecorder is a p2p.Taker that reads the node's Deliveries under a
// lock of its own, as a Taker must: Take puts what it read on taken;
// Ready only leaves a token on ready, for the test to read the channel.
type takeRecorder struct {
	node  atomic.Pointer[p2p.Node]
	mu    sync.Mutex
	taken chan p2p.Delivery
	ready chan struct{}
}

func newTakeRecorder() *takeRecorder {
	return &takeRecorder{taken: make(chan p2p.Delivery, 64), ready: make(chan struct{}, 1)}
}

func (r *takeRecorder) Ready() {
	select {
	case r.ready <- struct{}{}:
	default:
	}
}

func (r *takeRecorder) Take() { r.drain(func(d p2p.Delivery) { r.taken <- d }) }

// waiting reads what waits in the channel, under the Taker's lock.
func (r *takeRecorder) waiting() []p2p.Delivery {
	var ds []p2p.Delivery
	r.drain(func(d p2p.Delivery) { ds = append(ds, d) })
	return ds
}

// drain hands f, under the lock, what waits in the channel, until it is
// empty or closed.
func (r *takeRecorder) drain(f func(p2p.Delivery)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		select {
		case d, ok := <-r.node.Load().Deliveries():
			if !ok {
				return
			}
			f(d)
		default:
			return
		}
	}
}

func takerNode(t *testing.T, id tu.Identity, ids ...tu.Identity) (*p2p.Node, *takeRecorder) {
	rec := newTakeRecorder()
	n := tu.Node(t, id, tu.Allowlist(t, ids...), func(c *p2p.Config) {
		c.Deliveries, c.Taker, c.MaxMessageSize = true, rec, 100
	})
	rec.node.Store(n)
	return n, rec
}

// A stream's reader hands the Taker what it delivered, a message of the
// peer's or the Status an ack settled, by Take on its own goroutine; what
// the node decides elsewhere (a Status it gives itself, the channel's
// close) comes with Ready.
func TestTakerTakesWhatAReaderDelivered(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	a, ra := takerNode(t, ia, ia, ib)
	b, rb := takerNode(t, ib, ia, ib)

	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 7, Channel: 3, Data: []byte("hello")}
	d := tu.NextMatch(t, rb.taken, func(d p2p.Delivery) bool { return d.Kind == p2p.DeliveredData })
	if d.Data.From != a.ID() || string(d.Data.Bytes) != "hello" {
		t.Fatalf("taken %+v", d)
	}
	st := tu.NextMatch(t, ra.taken, func(d p2p.Delivery) bool { return d.Kind == p2p.DeliveredStatus })
	if !st.Status.OK || st.Status.MsgID != 7 {
		t.Fatalf("taken %+v", st)
	}

	// A Status the node gives itself: Ready, and it waits in the channel.
	for len(ra.ready) > 0 {
		<-ra.ready
	}
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), ID: 8, Data: make([]byte, 101)}
	found := false
	for deadline := time.After(tu.Timeout); !found; {
		select {
		case <-ra.ready:
		case <-deadline:
			t.Fatal("no Ready for a Status the node gave itself")
		}
		for _, d := range ra.waiting() {
			found = found || (d.Kind == p2p.DeliveredStatus && d.Status.MsgID == 8 && d.Status.Reason == p2p.ReasonTooLarge)
		}
	}

	// Close closes the channel, and says so with Ready.
	for len(ra.ready) > 0 {
		<-ra.ready
	}
	a.Close()
	select {
	case <-ra.ready:
	default:
		t.Fatal("no Ready once Deliveries closed")
	}
	ra.waiting() // returns only once it finds the channel closed
}

// A Taker needs the Deliveries channel.
func TestTakerWithoutDeliveriesRefused(t *testing.T) {
	id := tu.NewIdentity(t)
	_, err := p2p.New(p2p.Config{Key: id.Key, Allowlist: tu.Allowlist(t, id), Taker: newTakeRecorder()})
	if !errors.Is(err, p2p.ErrTakerAlone) {
		t.Fatalf("New: %v, want ErrTakerAlone", err)
	}
}

// A reader about to wait for a settler whose queue is full (frames whose
// verdicts are slow, a disk write) hands the Taker what it delivered
// before that first: the Status of an ack read among those frames must
// not wait for their verdicts.
func TestReaderHandsOverBeforeWaitingForTheSettler(t *testing.T) {
	const (
		held   = 300 // more than the settler's queue holds, with one being judged
		before = 10  // of them written before the ack
	)
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	judge := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(judge) }) }
	// a holds its messages (Defer) and the ack of b's (LazyAck, for up to
	// MaxAckDelay) in its buffer, so that b's reader reads the ack among
	// the frames whose verdicts b holds, with no wait between them: the
	// first read of an idle stream is short, and the reader hands over
	// whenever its buffer runs dry.
	a := tu.Node(t, ia, list, func(c *p2p.Config) {
		c.MaxInFlight, c.AckDelay = held+10, p2p.MaxAckDelay
	})
	rec := newTakeRecorder()
	rec.taken = make(chan p2p.Delivery, held+10)
	b := tu.Node(t, ib, list, func(c *p2p.Config) {
		c.Deliveries, c.Taker, c.MaxInFlight = true, rec, held+10
		c.Accept = func(d p2p.Data) (p2p.Reason, func() p2p.Reason) {
			if string(d.Bytes) != "held" {
				return p2p.ReasonOK, nil
			}
			return p2p.ReasonOK, func() p2p.Reason { <-judge; return p2p.ReasonOK }
		}
	})
	rec.node.Store(b)
	t.Cleanup(release) // before the nodes' Close, which would wait for the verdicts

	ctx := context.Background()
	send := func(n *p2p.Node, m p2p.SendMsg) {
		t.Helper()
		if err := n.SendMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	send(a, p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: []byte("open")})
	tu.NextMatch(t, rec.taken, func(d p2p.Delivery) bool { return d.Kind == p2p.DeliveredData })
	if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
		t.Fatalf("status %+v", st)
	}
	id := uint64(1)
	sendHeld := func(k int) {
		for range k {
			id++
			send(a, p2p.SendMsg{Peer: b.ID(), ID: id, Data: []byte("held"), Defer: true})
		}
	}
	sendHeld(before)
	send(b, p2p.SendMsg{Peer: a.ID(), ID: 77, Data: []byte("lazy"), LazyAck: true})
	tu.Next[p2p.Data](t, a.Receiver())
	sendHeld(held - before)
	a.Flush()

	st := tu.NextMatch(t, rec.taken, func(d p2p.Delivery) bool { return d.Kind == p2p.DeliveredStatus })
	if !st.Status.OK || st.Status.MsgID != 77 {
		t.Fatalf("taken %+v, want the OK Status of message 77", st)
	}
	release()
	for range held {
		if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
			t.Fatalf("status %+v", st)
		}
	}
}
