package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// outMsg is one SendMsg on its way to a peer.
type outMsg struct {
	SendMsg
	wireID   uint64
	deadline time.Time
}

// directBudget bounds the bytes awaiting acks on a stream for the node loop to
// write to it directly. Well under yamux's initial stream window (256 KiB),
// so such a write never waits for the peer to read.
const directBudget = 64 << 10

// peerSender owns everything the node sends to one peer: a FIFO queue, its
// goroutine, and the stream messages are written to. Each stream has one
// more goroutine reading acks.
//
// The common case skips the queue: when the stream is open, nothing is
// queued and a write cannot block, the node loop writes the frame itself
// (trySend), saving a goroutine handoff on every message.
type peerSender struct {
	n     *Node
	peer  peer.ID
	queue chan *outMsg
	// queued counts messages handed to the queue and not yet written; the
	// node loop may write directly only when it is zero, so that no message
	// overtakes an earlier one.
	queued atomic.Int64

	mu sync.Mutex // guards st and every write to it; the node loop only TryLocks
	st *outStream
}

func newPeerSender(n *Node, p peer.ID) *peerSender {
	return &peerSender{n: n, peer: p, queue: make(chan *outMsg, n.cfg.SendQueue)}
}

// enqueue hands m to the peer's goroutine, or answers queue_full.
func (ps *peerSender) enqueue(m *outMsg) {
	ps.queued.Add(1)
	select {
	case ps.queue <- m:
	default:
		ps.queued.Add(-1)
		ps.n.status(m.SendMsg, ReasonQueueFull, fmt.Errorf("%d messages already queued", ps.n.cfg.SendQueue))
	}
}

// trySend writes m from the node loop if that is safe and cannot block:
// nothing queued ahead of it, the stream open, a slot free and the bytes
// awaiting acks within directBudget. It reports whether it took m. The frame
// is left buffered: the node loop flushes once its input is drained, so a
// burst of messages leaves in few writes.
func (ps *peerSender) trySend(m *outMsg) bool {
	if len(m.Data) > directBudget || ps.queued.Load() != 0 || !ps.mu.TryLock() {
		return false
	}
	defer ps.mu.Unlock()
	st := ps.st
	if st == nil || ps.queued.Load() != 0 || !st.usable() || !st.tryReserve(len(m.Data)) {
		return false
	}
	st.write(m, false)
	return true
}

// flush pushes out frames trySend left buffered. If the peer's goroutine
// holds the lock it is writing to the same buffer, and flushes it before it
// waits or goes idle, so there is nothing to do.
func (ps *peerSender) flush() {
	if !ps.mu.TryLock() {
		return
	}
	defer ps.mu.Unlock()
	if st := ps.st; st != nil && st.bw.Buffered() > 0 {
		if err := st.bw.Flush(); err != nil {
			st.fail(ReasonConnectionLost, err)
		}
	}
}

// run writes queued messages until the node closes, then fails what is left.
func (ps *peerSender) run() {
	defer ps.n.wg.Done()
	defer func() {
		ps.mu.Lock()
		if ps.st != nil {
			ps.st.fail(ReasonClosed, nil)
		}
		ps.mu.Unlock()
		for {
			select {
			case m := <-ps.queue:
				ps.n.status(m.SendMsg, ReasonClosed, nil)
			default:
				return
			}
		}
	}()
	for {
		select {
		case m := <-ps.queue:
			ps.mu.Lock()
			ps.deliver(m)
			ps.queued.Add(-1)
			ps.mu.Unlock()
		case <-ps.n.ctx.Done():
			return
		}
	}
}

// deliver writes one queued message, opening a stream (and dialing) first if
// needed. The caller holds ps.mu.
func (ps *peerSender) deliver(m *outMsg) {
	// A stream that died before m was written is replaced once; a second
	// failure is reported rather than retried forever.
	for attempt := 0; ; attempt++ {
		if ps.st == nil || !ps.st.usable() {
			st, err := ps.open(m)
			if err != nil {
				ps.st = nil
				ps.n.status(m.SendMsg, dialReason(ps.n.ctx, err), err)
				return
			}
			ps.st = st
		}
		if ps.st.send(m, len(ps.queue) == 0) {
			return
		}
		if attempt > 0 {
			ps.n.status(m.SendMsg, ReasonConnectionLost, errors.New("stream closed before the message was written"))
			return
		}
	}
}

// open connects to the peer if needed, then opens a message stream.
func (ps *peerSender) open(m *outMsg) (*outStream, error) {
	n := ps.n
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.DialTimeout)
	defer cancel()
	if n.host.Network().Connectedness(ps.peer) != network.Connected {
		if m.Addr != nil {
			n.host.Peerstore().AddAddr(ps.peer, m.Addr, peerstore.TempAddrTTL)
		}
		if len(n.host.Peerstore().Addrs(ps.peer)) == 0 {
			return nil, errNotConnected
		}
		n.clearBackoff(ps.peer)
		if err := n.host.Connect(ctx, peer.AddrInfo{ID: ps.peer}); err != nil {
			return nil, err
		}
	}
	s, err := n.host.NewStream(ctx, ps.peer, ProtocolID)
	if err != nil {
		return nil, err
	}
	st := &outStream{
		n:     n,
		peer:  ps.peer,
		s:     s,
		bw:    bufio.NewWriterSize(s, streamBufSize),
		slots: make(chan struct{}, n.cfg.MaxInFlight),
		dead:  make(chan struct{}),
	}
	st.timer = time.AfterFunc(time.Hour, st.checkTimeout)
	st.timer.Stop()
	n.wg.Add(1)
	go st.readAcks()
	return st, nil
}

var errNotConnected = errors.New("not connected and no address known")

func dialReason(ctx context.Context, err error) Reason {
	switch {
	case ctx.Err() != nil:
		return ReasonClosed
	case errors.Is(err, errNotConnected):
		return ReasonNotConnected
	case errors.Is(err, swarm.ErrGaterDisallowedConnection):
		return ReasonRejected
	default:
		return ReasonDialFailed
	}
}

// outStream is one message stream to a peer: frames written in order, acks
// read in the same order.
type outStream struct {
	n     *Node
	peer  peer.ID
	s     network.Stream
	bw    *bufio.Writer
	slots chan struct{} // one token per frame awaiting its ack
	timer *time.Timer   // fires at the oldest pending frame's ack deadline
	dead  chan struct{}

	mu      sync.Mutex
	pending []*outMsg // awaiting ack, oldest first
	head    int
	nextID  uint64
	unacked int // payload bytes of pending
	armed   bool
	closed  bool
}

// usable reports whether the stream can take another frame: neither failed
// nor on a connection that has closed.
func (st *outStream) usable() bool {
	select {
	case <-st.dead:
		return false
	default:
		return !st.s.Conn().IsClosed()
	}
}

// tryReserve takes an in-flight slot without waiting, if the bytes awaiting
// acks stay within directBudget.
func (st *outStream) tryReserve(size int) bool {
	st.mu.Lock()
	ok := st.unacked+size <= directBudget
	st.mu.Unlock()
	if !ok {
		return false
	}
	select {
	case st.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// send writes m, waiting for an in-flight slot first. It returns false when
// the stream died before m was written (m may be retried); once m is
// written, its Status is this stream's business and send returns true.
func (st *outStream) send(m *outMsg, flush bool) bool {
	select {
	case st.slots <- struct{}{}:
	default:
		// Nothing more may be in flight: push out what is buffered, so the
		// acks that free a slot can come back, then wait.
		if err := st.bw.Flush(); err != nil {
			st.fail(ReasonConnectionLost, err)
			return false
		}
		select {
		case st.slots <- struct{}{}:
		case <-st.dead:
			return false
		}
	}
	return st.write(m, flush)
}

// write sends m on a reserved slot. It returns false when the stream died
// before m was written.
func (st *outStream) write(m *outMsg, flush bool) bool {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return false
	}
	st.unacked += len(m.Data)
	st.nextID++
	m.wireID = st.nextID
	m.deadline = time.Now().Add(st.n.cfg.AckTimeout)
	st.pending = append(st.pending, m)
	if !st.armed {
		st.armed = true
		st.timer.Reset(st.n.cfg.AckTimeout)
	}
	st.mu.Unlock()

	f := &pb.Data{Id: m.wireID, Channel: m.Channel, FromChannel: m.FromChannel, Payload: m.Data}
	st.n.metrics.written(len(m.Data))
	err := writeFrame(st.bw, f)
	if err == nil && flush {
		err = st.bw.Flush()
	}
	if err != nil {
		st.fail(ReasonConnectionLost, err)
	}
	return true
}

// readAcks matches acks to pending frames until the stream ends.
func (st *outStream) readAcks() {
	defer st.n.wg.Done()
	br := bufio.NewReaderSize(st.s, 4<<10)
	var ack pb.Ack
	for {
		if err := readFrame(br, st.s, maxAckSize, st.n.cfg.ReadTimeout, &ack); err != nil {
			st.fail(ReasonConnectionLost, err)
			return
		}
		st.mu.Lock()
		if st.head == len(st.pending) || (ack.Id != 0 && ack.Id != st.pending[st.head].wireID) {
			st.mu.Unlock()
			st.n.charge(st.peer, remoteIP(st.s.Conn()), ratelimit.ProtocolViolation)
			st.fail(ReasonProtocolError, fmt.Errorf("unexpected ack %d", ack.Id))
			return
		}
		m := st.pending[st.head]
		st.n.metrics.acked(m.deadline.Add(-st.n.cfg.AckTimeout))
		st.unacked -= len(m.Data)
		st.pending[st.head] = nil
		st.head++
		if st.head == len(st.pending) {
			st.pending, st.head = st.pending[:0], 0
		}
		st.mu.Unlock()
		<-st.slots
		st.n.status(m.SendMsg, reasonFromWire(ack.Reason), nil)
		if ack.Id == 0 {
			// The peer could not read a frame and resets the stream.
			st.fail(ReasonConnectionLost, errors.New("peer reset the stream after an unreadable frame"))
			return
		}
	}
}

// checkTimeout runs when the oldest pending frame's ack may be overdue.
func (st *outStream) checkTimeout() {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return
	}
	if st.head == len(st.pending) {
		st.armed = false
		st.mu.Unlock()
		return
	}
	wait := time.Until(st.pending[st.head].deadline)
	if wait > 0 {
		st.timer.Reset(wait)
		st.mu.Unlock()
		return
	}
	st.mu.Unlock()
	st.n.charge(st.peer, remoteIP(st.s.Conn()), ratelimit.UnansweredAck)
	st.fail(ReasonAckTimeout, fmt.Errorf("no ack within %s", st.n.cfg.AckTimeout))
}

// fail kills the stream once and gives every pending frame its Status.
func (st *outStream) fail(r Reason, err error) {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return
	}
	st.closed = true
	pending := st.pending[st.head:]
	st.pending = nil
	st.mu.Unlock()
	close(st.dead)
	st.timer.Stop()
	st.s.Reset()
	if st.n.ctx.Err() != nil {
		r = ReasonClosed
	}
	for _, m := range pending {
		st.n.status(m.SendMsg, r, err)
	}
}
