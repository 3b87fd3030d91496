package p2p_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// Which of a stream's writer and reader meets its closed connection first
// is up to the scheduler. These tests order them with the node's stream
// hooks: a write to the stream (the first, or a later one) waits until the
// connection is closed, and the reader waits after its read failed until
// the stream's end has begun, so that the writer's classification is the
// one reported. (Before the first write, the reader waits for it anyway:
// its first read would send the proposal alone.)

// orderedStream holds one write to the node's stream, and its reader
// after a failed read, until the test lets them go.
type orderedStream struct {
	hold       int32 // the write held: 1 for the first
	writes     atomic.Int32
	writing    chan struct{} // closed when that write is held
	release    chan struct{} // closed by the test: the held write goes on
	answered   chan struct{} // closed when the reader has read the answer to the proposal
	readFailed chan struct{} // closed when a read failed; the reader then waits for ended
	ended      chan struct{} // closed when a stream's end begins
	once       struct{ release, answered, readFailed, ended sync.Once }
}

func newOrderedStream(hold int32) *orderedStream {
	return &orderedStream{hold: hold, writing: make(chan struct{}), release: make(chan struct{}),
		answered: make(chan struct{}), readFailed: make(chan struct{}), ended: make(chan struct{})}
}

// options are the node's hooks. A hook never waits past tu.Timeout: the
// test then fails on what the node reported.
func (o *orderedStream) options() []func(*p2p.Config) {
	write := func() {
		if o.writes.Add(1) == o.hold {
			close(o.writing)
			waitFor(o.release)
		}
	}
	read := func(err error) {
		if err == nil {
			o.once.answered.Do(func() { close(o.answered) })
			return
		}
		o.once.readFailed.Do(func() { close(o.readFailed) })
		waitFor(o.ended)
	}
	end := func(bool) { o.once.ended.Do(func() { close(o.ended) }) }
	return []func(*p2p.Config){p2p.WithOpenedStreamHooks(write, read), p2p.WithEndHook(end)}
}

func waitFor(ch <-chan struct{}) {
	t := time.NewTimer(tu.Timeout)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// letGo lets the held write go on.
func (o *orderedStream) letGo() { o.once.release.Do(func() { close(o.release) }) }

// unblock lets every hook go on: deferred by a test, so that a test
// failing midway does not leave its node's Close waiting on a hook.
func (o *orderedStream) unblock() {
	o.letGo()
	o.once.ended.Do(func() { close(o.ended) })
}

// await waits for ch to close, or fails the test.
func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(tu.Timeout):
		t.Fatalf("%s: not within %s", what, tu.Timeout)
	}
}

func disconnectedFrom(p peer.ID) func(p2p.Disconnected) bool {
	return func(d p2p.Disconnected) bool { return d.Peer == p }
}

// A peer that closes the connection right after the handshake (what its
// gater does to a key it refuses) while our first frame is being written:
// the writer meets the closed connection before the reader, and reports it
// as the reader would, dial_failed with ErrClosedAtHandshake, not
// connection_lost (failWrite).
func TestRefusalMetByTheWriter(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	o := newOrderedStream(1)
	a := tu.Node(t, ia, tu.Allowlist(t, ia, ib), o.options()...)
	// It closes the connection when the test says, not when its gater
	// decides, so that the close lands between the stream's opening and
	// its first write.
	defer o.unblock()
	peerB := tu.RawHost(t, ib.Key, "127.0.0.1")
	// Its end of the connection is up after ours (Noise's last message
	// goes from us to it): it is closed once there.
	conns := make(chan network.Conn, 1)
	peerB.Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		select {
		case conns <- c:
		default:
		}
	}})

	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: peerB.Addrs()[0], ID: 1, Data: []byte("let me in")}
	await(t, o.writing, "the write held")
	select {
	case c := <-conns:
		c.Close()
	case <-time.After(tu.Timeout):
		t.Fatalf("the peer had no connection within %s", tu.Timeout)
	}
	nextOf(t, a, disconnectedFrom(ib.ID))
	o.letGo()
	st := nextOf(t, a, statusOf(1))
	if st.Reason != p2p.ReasonDialFailed || !errors.Is(st.Err, p2p.ErrClosedAtHandshake) {
		t.Fatalf("status %+v (%v), want dial_failed: %v", st, st.Err, p2p.ErrClosedAtHandshake)
	}
}

// A connection this node closes itself (the peer left its allowlist)
// before the peer answered anything on it is no refusal by the peer: the
// message is reported connection_lost, never ErrClosedAtHandshake, whose
// text tells the operator that the peer may not allowlist them.
func TestOwnCloseIsNotARefusal(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	o := newOrderedStream(1)
	listA := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, listA, o.options()...)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib))
	defer o.unblock()

	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: b.Addrs()[0], ID: 1, Data: []byte("hello")}
	await(t, o.writing, "the write held")
	listA.Remove(ib.ID) // a closes its connection to b
	nextOf(t, a, disconnectedFrom(ib.ID))
	o.letGo()
	st := nextOf(t, a, statusOf(1))
	if st.Reason != p2p.ReasonConnectionLost || errors.Is(st.Err, p2p.ErrClosedAtHandshake) {
		t.Fatalf("status %+v (%v), want connection_lost", st, st.Err)
	}
}

// A peer that answered our proposal of the protocol has accepted the
// connection, and may have delivered our first frame: its connection
// closing before it acked is a connection lost, whichever of the stream's
// writer and reader meets it first. The writer used to know only of frame
// bytes from the peer, not of the answer, and reported such a stream
// dial_failed with ErrClosedAtHandshake ("not delivered") for messages the
// peer had taken.
func TestAnsweredThenClosedIsNotARefusal(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	o := newOrderedStream(2) // the second message's write
	a := tu.Node(t, ia, tu.Allowlist(t, ia, ib), o.options()...)
	defer o.unblock()
	peerB := tu.RawHost(t, ib.Key, "127.0.0.1")
	got := make(chan network.Stream, 1)
	peerB.SetStreamHandler(p2p.ProtocolID, func(s network.Stream) {
		// Takes the first message, and acks nothing.
		_ = readData(s, func(*pb.Data) error {
			select {
			case got <- s:
			default:
			}
			return nil
		})
	})

	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: peerB.Addrs()[0], ID: 1, Data: []byte("first")}
	var s network.Stream
	select {
	case s = <-got:
	case <-time.After(tu.Timeout):
		t.Fatalf("the peer got no message within %s", tu.Timeout)
	}
	await(t, o.answered, "the answer read")
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, ID: 2, Data: []byte("second")}
	await(t, o.writing, "the second write held")
	s.Conn().Close()
	// The reader met the closed connection, and waits.
	await(t, o.readFailed, "the reader's failed read")
	o.letGo()
	for id := uint64(1); id <= 2; id++ {
		st := nextOf(t, a, statusOf(id))
		if st.Reason != p2p.ReasonConnectionLost || errors.Is(st.Err, p2p.ErrClosedAtHandshake) {
			t.Fatalf("message %d: status %+v (%v), want connection_lost", id, st, st.Err)
		}
	}
}
