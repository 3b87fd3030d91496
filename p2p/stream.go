package p2p

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// msgStream is one message stream with a peer, whichever end opened it.
// Both ends write Data frames for their own messages and Ack frames for the
// other end's, so an ack and a message going the same way (the ack of a
// request and its reply) can leave in one write.
//
// The stream has one reader (serve), which delivers the peer's messages and
// matches the peer's acks to ours. Writes come from the node loop, the
// peer's sender goroutine, the reader and the ack-delay timer, under one
// lock (stream_write.go); our messages awaiting acks are in stream_out.go.
type msgStream struct {
	n       *Node
	peer    peer.ID
	ip      netip.Addr
	s       network.Stream
	inbound bool // the peer opened it
	// cs is what the node knows of the stream's connection (whether the
	// peer accepted it, whether this node closed it), shared by its
	// streams: refusedAtHandshake asks it.
	cs   *connState
	dead chan struct{} // closed when the stream ends
	gone chan struct{} // closed once it has ended: acks flushed, stream closed or reset

	// Ending the stream for a DisconnectFrom or Close, drain.go.
	draining  atomic.Bool
	drainMu   sync.Mutex    // orders drain's read deadline before the reader's
	drainWait time.Duration // under drainMu

	// Read side: frames awaiting Config.Accept's verdict go, in order, to
	// the settler goroutine (settle.go), which the reader owns.
	settleQ   chan stagedFrame // nil until the first verdict to wait for
	settled   chan struct{}    // closed when the settler has exited
	unsettled atomic.Int32     // frames handed to the settler and not yet acked

	// The peer's frames unanswered, for the in-flight limit on receipt
	// (docs/PROTOCOL.md §4.6): received counts the Data frames read (only
	// the reader adds; the idle timer reads it), answered the acks handed
	// to the wire. A frame is unanswered from its arrival until its ack may
	// have reached the peer: while it is judged, staged for the settler,
	// queued, or held lazily in bw.
	received atomic.Int64
	answered atomic.Int64

	// Write side, stream_write.go.
	wmu          sync.Mutex    // held for every write to bw
	bw           *bufio.Writer // borrowed while it holds bytes (writer); nil when idle
	ww           wireWriter
	wdeadline    time.Time
	lazyBuffered bool // bw holds acks that may wait for AckDelay
	delayArmed   bool
	delay        *time.Timer  // flushes lazy acks nothing else carried
	wacks        []ackRec     // acks being written, under wmu
	bufAcks      int64        // acks in bw not yet counted answered, under wmu
	nowait       bool         // the holder of wmu may not wait for the peer (stream_spill.go)
	spill        []byte       // bytes a nowait holder handed the stream that it could not take at once, under wmu
	spillArmed   bool         // spiller is due to write spill, under wmu
	spiller      *time.Timer  // writes spill, waiting as long as it must (stream_spill.go)
	watchdog     *time.Timer  // wakes a nowait write past directWriteWait
	nwMu         sync.Mutex   // guards nwWriting, nwFired: the watchdog against the writer
	nwWriting    bool         // a nowait write is on its way to the stream
	nwFired      bool         // the watchdog woke it
	wclosed      bool         // the write half is closed (drain), under wmu
	ackTail      bool         // acks were written after our last Data frame, under wmu
	flushReq     atomic.Bool  // a writer asked for bw to be flushed
	nacks        atomic.Int32 // len(acks)
	amu          sync.Mutex   // guards acks and urgent
	acks         []ackRec     // owed to the peer, not yet in bw
	urgent       bool         // one of acks may not wait

	// Our messages, stream_out.go.
	slots   chan struct{} // one token per message awaiting its ack
	timer   *time.Timer   // fires at the oldest pending message's ack deadline
	mu      sync.Mutex
	pending []outMsg // awaiting ack, oldest first: copies, so a caller's outMsg can live on its stack
	head    int
	nextID  uint64
	unacked int // payload bytes of pending
	armed   bool
	closed  bool

	idle     *time.Timer // looks for a stream that carries nothing, stream_idle.go
	lastMark idleMark    // what it had carried at the last look, under mu
}

func (n *Node) newMsgStream(s network.Stream, inbound bool) *msgStream {
	st := &msgStream{
		n:       n,
		peer:    s.Conn().RemotePeer(),
		ip:      remoteIP(s.Conn()),
		s:       s,
		inbound: inbound,
		cs:      n.conns.of(s.Conn()),
		dead:    make(chan struct{}),
		gone:    make(chan struct{}),
		slots:   make(chan struct{}, n.cfg.MaxInFlight),
	}
	st.ww = wireWriter{st, s}
	st.timer = time.AfterFunc(time.Hour, st.checkTimeout)
	st.timer.Stop()
	st.delay = time.AfterFunc(time.Hour, st.delayExpired)
	st.delay.Stop()
	st.idle = time.AfterFunc(time.Hour, st.checkIdle)
	st.idle.Stop()
	st.spiller = time.AfterFunc(time.Hour, st.writeSpilled)
	st.spiller.Stop()
	st.watchdog = time.AfterFunc(time.Hour, st.nowaitExpired)
	st.watchdog.Stop()
	st.lastMark = unseen
	return st
}

// usable reports whether our messages can be written to the stream: it has
// not ended and is not being drained, nor has its connection closed.
func (st *msgStream) usable() bool {
	return !st.ended() && !st.draining.Load() && !st.s.Conn().IsClosed()
}

func (st *msgStream) ended() bool {
	select {
	case <-st.dead:
		return true
	default:
		return false
	}
}

// serve reads the peer's frames until the stream ends: Data is delivered and
// acked, Acks settle our messages. The acks it owes are written once no
// further whole frame is buffered, so a pipelining peer gets them in
// batches, and none waits behind a frame still on its way.
func (st *msgStream) serve() {
	n := st.n
	defer st.stopSettler()
	st.watchIdle()
	rd := &lazyReader{s: st.s, bufs: &n.bufs}
	maxFrame := n.cfg.MaxMessageSize + frameOverhead
	var (
		f        frame
		lastID   uint64
		accepted = st.inbound // the peer opened it: accepted already
	)
	if accepted {
		st.cs.accepted.Store(true)
	}
	for {
		if st.ended() {
			// Ended by another goroutine (a failed write, an ack timeout,
			// Close): what is still buffered is neither delivered nor
			// matched, as a reset would have dropped it on its way.
			return
		}
		if st.draining.Load() {
			st.finishDrain(rd.buffer(), maxFrame)
			return
		}
		br, err := rd.next()
		if err == nil {
			if !accepted {
				// Bytes from the peer: it accepted the connection.
				accepted = true
				st.cs.accepted.Store(true)
			}
			err = readFrame(br, st.s, maxFrame, n.cfg.ReadTimeout, &f)
		}
		if err != nil {
			if st.draining.Load() && !st.ended() {
				// drain's deadline woke the reader.
				st.finishDrain(rd.buffer(), maxFrame)
				return
			}
			st.stopSettler()
			st.readFailed(err)
			return
		}
		switch f.kind {
		case frameKindData:
			if !st.onData(&f, &lastID) {
				return
			}
		case frameKindAck:
			if !st.onAck(&f) {
				return
			}
		default:
			st.refuse(ratelimit.MalformedMessage, pb.Reason_MALFORMED, errors.New("empty frame"))
			return
		}
		switch {
		case st.nacks.Load() >= maxQueuedAcks:
			// The writer holding the stream is stuck on a peer that does
			// not read, yet the peer keeps sending: stop reading it too,
			// rather than queue acks without bound, until the write goes
			// through or its timeout ends the stream.
			st.wmu.Lock()
			st.unlockW()
		case rd.idle() || !rd.whole():
			// Nothing more to read, or the next frame is not all here:
			// reading it may block (docs/PROTOCOL.md §4.4: acks are
			// flushed before waiting for more input).
			st.pushAcks()
		}
	}
}

// maxQueuedAcks bounds the acks a stream's reader queues while another
// goroutine holds the write lock: far above what an honest peer's
// in-flight limit lets it have unanswered.
const maxQueuedAcks = 4096

// onData delivers one of the peer's messages and owes its ack. It reports
// whether the stream goes on.
func (st *msgStream) onData(d *frame, lastID *uint64) bool {
	n := st.n
	if d.id <= *lastID {
		// Ids must grow: a replayed or zero id is not a message.
		st.refuse(ratelimit.MalformedMessage, pb.Reason_MALFORMED, fmt.Errorf("message id %d after %d", d.id, *lastID))
		return false
	}
	*lastID = d.id
	unanswered := st.received.Load() - st.answered.Load()
	st.received.Add(1)
	var (
		r     pb.Reason
		later later
	)
	switch {
	case unanswered >= int64(n.cfg.MaxInFlight):
		// The peer broke the in-flight limit, or runs with a higher one:
		// refused, not charged (a difference of configuration is not
		// misbehaviour), and not judged.
		r = pb.Reason_TOO_MANY_IN_FLIGHT
	case len(d.payload) > n.cfg.MaxMessageSize:
		// A readable frame with a payload over the limit (the frame
		// overhead allowance let it through): refused with its own id,
		// and the stream goes on.
		r = pb.Reason_TOO_LARGE
	default:
		r, later = n.judge(st, d)
	}
	if later.wait != nil && st.unsettled.Load() == 0 && later.known() {
		// Judged through a wait whose verdict is known already
		// (Config.AcceptReady's ready is closed), and nothing before it
		// waits: settled here, as the settler would, without the hop
		// to it. Still a message the caller took (Overflow).
		st.ack(d, reasonToWire(later.wait()), true)
		return true
	}
	if later.wait != nil || st.unsettled.Load() > 0 {
		// Judged later (Config.Accept is writing it down), or behind one
		// that is: acks leave in arrival order.
		st.stage(stagedFrame{f: *d, reason: r, later: later})
		return true
	}
	st.ack(d, r, false)
	return true
}

// ack delivers a frame judged OK, and owes the peer its ack: OK, busy when
// the Receiver is full, or the refusal r. taken says Config.Accept took the
// frame through a wait (offer).
func (st *msgStream) ack(d *frame, r pb.Reason, taken bool) {
	n := st.n
	// Refusals that cost the peer a token are charged before the ack can
	// leave: by the time the peer reads it, the token is spent.
	switch r {
	case pb.Reason_TOO_LARGE:
		n.charge(st.peer, st.ip, ratelimit.OversizedMessage)
	case pb.Reason_MALFORMED:
		// Config.Accept found the payload unreadable (a handler node: not
		// an envelope). One token, and the stream goes on.
		n.charge(st.peer, st.ip, ratelimit.MalformedMessage)
	case pb.Reason_NOT_ROUTED:
		n.charge(st.peer, st.ip, ratelimit.Unauthorized)
	}
	ack := ackRec{id: d.id, reason: r}
	// The ack is queued under the same lock as the delivery: the caller
	// may answer the moment it has the message, and the answer's write
	// takes the queued acks first (writeLocked), so the ack always
	// precedes the answer on the stream, and leaves with it.
	st.amu.Lock()
	overflowed := false
	if r == pb.Reason_OK {
		ack.reason, overflowed = n.offer(st, d, taken)
	}
	// Counted before the ack can leave: a peer that has it finds the
	// frame counted.
	n.metrics.frameReceived(reasonFromWire(ack.reason), len(d.payload))
	st.queueAckLocked(ack, holdsAck(d, ack.reason, n.cfg.AckDelay))
	st.amu.Unlock()
	if overflowed {
		// Outside amu: the taker may answer at once, and a write takes
		// amu.
		n.cfg.Overflow(n.data(st, d))
	}
}

// holdsAck reports whether the ack of d, judged r, may wait for a write to
// share: only when the sender asked for a lazy ack, the message was
// delivered, and acks are delayed at all. A refusal is what the sender must
// act on, so it goes at once.
func holdsAck(d *frame, r pb.Reason, delay time.Duration) bool {
	return d.lazy && r == pb.Reason_OK && delay > 0
}

// onAck settles the oldest of our messages awaiting an ack. It reports
// whether the stream goes on.
func (st *msgStream) onAck(a *frame) bool {
	st.mu.Lock()
	if st.closed {
		// Ended by another goroutine (a failed write, an ack timeout,
		// Close) while the ack waited in the read buffer: its messages
		// have had their Status, and pending is gone. Not the peer's
		// fault, and nothing left to match.
		st.mu.Unlock()
		return false
	}
	if st.head == len(st.pending) || (a.id != 0 && a.id != st.pending[st.head].wireID) {
		st.mu.Unlock()
		st.n.charge(st.peer, st.ip, ratelimit.ProtocolViolation)
		st.fail(ReasonProtocolError, fmt.Errorf("unexpected ack %d", a.id))
		return false
	}
	m := st.pending[st.head]
	st.n.metrics.acked(m.deadline.Add(-st.n.cfg.AckTimeout))
	st.unacked -= len(m.Data)
	st.pending[st.head] = outMsg{}
	st.head++
	if st.head == len(st.pending) {
		st.pending, st.head = st.pending[:0], 0
	}
	st.mu.Unlock()
	<-st.slots
	st.n.status(m.SendMsg, reasonFromWire(a.reason), nil)
	if a.id == 0 {
		// The peer could not read a frame of ours and closes the stream.
		st.fail(ReasonConnectionLost, errors.New("peer closed the stream after an unreadable frame"))
		return false
	}
	return true
}

// failWrite ends the stream after a write failed: as a refusal at the
// handshake when it is one (the writer may meet the closed connection
// before the reader does), else as a connection lost.
func (st *msgStream) failWrite(err error) {
	if refusedAtHandshake(st.s.Conn(), st.cs) {
		st.fail(ReasonDialFailed, &ClosedAtHandshakeError{Self: st.n.ID(), Peer: st.peer, Err: err})
		return
	}
	st.fail(ReasonConnectionLost, err)
}

// readFailed ends a stream whose next frame could not be read: a clean end,
// a frame over the size limit, a frame that is not protobuf, or a frame that
// did not arrive in time.
func (st *msgStream) readFailed(err error) {
	n := st.n
	switch {
	case st.ended():
		// Ended here (an ack timeout, a failed write, Close): the read
		// failed because of it, not because of the peer.
	case errNotSpoken(err):
		// Our proposal of the protocol, refused (stream_open.go): as a
		// failed dial, and no misbehaviour.
		st.fail(ReasonDialFailed, fmt.Errorf("the peer does not speak %s: %w", ProtocolID, err))
	case refusedAtHandshake(st.s.Conn(), st.cs):
		// A connection this node dialed closed (its end read, or a reset)
		// before the peer accepted anything on it. (A peer that resets
		// only the stream may do it before its answer reaches us: that is
		// a stream lost, below.)
		st.fail(ReasonDialFailed, &ClosedAtHandshakeError{Self: n.ID(), Peer: st.peer, Err: err})
	case errors.Is(err, io.EOF):
		st.end(ReasonConnectionLost, errors.New("peer closed the stream"), true)
	case errors.Is(err, io.ErrUnexpectedEOF):
		// The peer closed its write half within a frame (docs/PROTOCOL.md
		// §4.2): the cut frame is lost, as on a close between frames, and
		// the acks owed for the frames before it still go, as they do
		// there. A reset would drop them, and leave the fate of messages
		// already delivered unknown to their sender.
		st.end(ReasonConnectionLost, fmt.Errorf("peer closed the stream within a frame: %w", err), true)
	case frameTooLarge(err):
		// The body is not read: it may be as large as the prefix claims.
		st.refuse(ratelimit.OversizedMessage, pb.Reason_TOO_LARGE, err)
	case isTimeout(err):
		n.charge(st.peer, st.ip, ratelimit.ProtocolViolation)
		st.fail(ReasonConnectionLost, err)
	case errors.Is(err, network.ErrReset) || n.ctx.Err() != nil:
		st.fail(ReasonConnectionLost, err)
	default:
		st.refuse(ratelimit.MalformedMessage, pb.Reason_MALFORMED, err)
	}
}

// refuse answers a frame that cannot be read or accepted with an id-0 ack
// (it answers the peer's oldest unanswered message), charges the peer, and
// closes the stream. The frame is counted as received with that ack,
// whether or not it could be read.
func (st *msgStream) refuse(o ratelimit.Reason, r pb.Reason, err error) {
	st.stopSettler() // their acks come first: the id-0 ack answers the oldest unanswered frame
	st.n.metrics.frameReceived(reasonFromWire(r), 0)
	st.n.charge(st.peer, st.ip, o)
	st.queueAck(ackRec{reason: r}, false)
	st.end(ReasonConnectionLost, fmt.Errorf("peer sent an unacceptable frame: %w", err), true)
}

// fail ends the stream at once, with a reset: frames on their way either
// way are dropped. Each of our messages awaiting an ack gets its Status
// with r. It never takes the write lock, so a writer may call it.
func (st *msgStream) fail(r Reason, err error) { st.end(r, err, false) }

// end ends the stream once. graceful writes the acks owed first and closes
// rather than resets: a reset would discard them on their way, and the peer
// would never learn why its messages failed. Only the reader ends a stream
// gracefully.
func (st *msgStream) end(r Reason, err error, graceful bool) {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return
	}
	st.closed = true
	pending := st.pending[st.head:]
	st.pending, st.head = nil, 0
	st.mu.Unlock()
	if st.n.cfg.endHook != nil {
		st.n.cfg.endHook(st.inbound)
	}
	close(st.dead)
	st.timer.Stop()
	st.delay.Stop()
	st.idle.Stop()
	st.spiller.Stop()
	st.watchdog.Stop()
	if graceful && st.flushAll() == nil {
		st.s.Close()
	} else {
		st.s.Reset()
	}
	if st.n.closing.Load() || st.n.ctx.Err() != nil {
		r = ReasonClosed
	}
	// The Statuses before the stream leaves the set and gone closes: Close
	// ends the streams it finds in the set and waits for their gone before
	// it closes the Receiver, so a Status pushed later could be dropped.
	// (status never blocks: the Receiver queues what it cannot hold.)
	for _, m := range pending {
		st.n.status(m.SendMsg, r, err)
	}
	st.n.streams.remove(st)
	close(st.gone)
}
