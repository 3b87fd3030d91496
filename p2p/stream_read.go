package p2p

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// A message stream's reader: serve reads the peer's frames, delivers its
// Data and matches its acks to our messages; readFailed tells what a
// failed read means, and refuse answers a frame that cannot be taken.

// serve reads the peer's frames until the stream ends: Data is delivered and
// acked, Acks settle our messages. The acks it owes are written once no
// further whole frame is buffered, so a pipelining peer gets them in
// batches, and none waits behind a frame still on its way.
func (st *msgStream) serve() {
	n := st.n
	defer st.stopSettler()
	defer st.handOver()
	st.watchIdle()
	rd := &lazyReader{s: st.s, bufs: &n.bufs}
	defer rd.release()
	maxFrame := n.cfg.MaxMessageSize + frameOverhead
	var (
		f        frame
		lastID   uint64
		accepted = st.inbound // the peer opened it: accepted already
		heard    bool         // a frame came from the peer
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
			err = readFrame(br, st, maxFrame, n.cfg.ReadTimeout, &f)
		}
		if err != nil {
			if st.draining.Load() && !st.ended() {
				// drain's deadline woke the reader.
				st.finishDrain(rd.buffer(), maxFrame)
				return
			}
			st.stopSettler()
			st.readFailed(err, heard)
			return
		}
		heard = true
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
			st.handOver()
			st.wmu.Lock()
			st.unlockW()
		case rd.idle() || !rd.whole():
			// Nothing more to read, or the next frame is not all here:
			// reading it may block (docs/PROTOCOL.md §4.4: acks are
			// flushed before waiting for more input).
			st.pushAcks()
			st.handOver()
		}
	}
}

// handOver gives the Taker the messages this reader delivered without
// telling it (offer), before the reader waits for anything: a batch of
// frames read together is taken at once.
func (st *msgStream) handOver() {
	if st.owed {
		st.owed = false
		st.n.events.taker.Take()
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
		st.ack(d, reasonToWire(later.wait()), true, true)
		return true
	}
	if later.wait != nil || st.unsettled.Load() > 0 {
		// Judged later (Config.Accept is writing it down), or behind one
		// that is: acks leave in arrival order.
		st.stage(stagedFrame{f: *d, reason: r, later: later})
		return true
	}
	st.ack(d, r, false, true)
	return true
}

// ack delivers a frame judged OK, and owes the peer its ack: OK, busy when
// the Receiver is full, or the refusal r. taken says Config.Accept took the
// frame through a wait (offer).
func (st *msgStream) ack(d *frame, r pb.Reason, taken, reader bool) {
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
		ack.reason, overflowed = n.offer(st, d, taken, reader)
		if reader && n.events.taker != nil && ack.reason == pb.Reason_OK && !overflowed {
			st.owed = true // only the reader reads and writes it
		}
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
	// Still being written: its writer reports the Status once done (wrote).
	early := m.wireID == st.writing
	if early {
		st.early = earlyStatus{m.SendMsg, reasonFromWire(a.reason), true}
	}
	if a.id == 0 {
		// The peer could not read a frame of ours and closes the stream.
		// Nothing more goes on it from here, before m's Status: its
		// caller may send the next message the moment it has it, and
		// that one must go on a new stream (docs/PROTOCOL.md §4.4), not
		// fail with this one.
		st.refused.Store(true)
	}
	st.mu.Unlock()
	<-st.slots
	if !early {
		st.n.statusBy(m.SendMsg, reasonFromWire(a.reason), nil, true)
		if st.n.events.taker != nil {
			st.owed = true
		}
	}
	if a.id == 0 {
		if st.n.cfg.refusedHook != nil {
			st.n.cfg.refusedHook()
		}
		st.fail(ReasonConnectionLost, errors.New("peer closed the stream after an unreadable frame"))
		return false
	}
	return true
}

// readFailed ends a stream whose next frame could not be read: a clean end,
// a frame over the size limit, a frame that is not protobuf, or a frame that
// did not arrive in time. heard says a frame of the peer's was read before.
func (st *msgStream) readFailed(err error, heard bool) {
	n := st.n
	switch {
	case st.ended():
		// Ended here (an ack timeout, a failed write, Close): the read
		// failed because of it, not because of the peer.
	case errNotSpoken(err):
		// Our proposal of the protocol, refused (stream_open.go): as a
		// failed dial, and no misbehaviour.
		st.fail(ReasonDialFailed, fmt.Errorf("the peer does not speak %s: %w", ProtocolID, err))
	case n.refusedAtHandshake(st.s.Conn(), st.cs):
		// A connection this node dialed closed (its end read, or a reset)
		// before the peer accepted anything on it. (A peer that resets
		// only the stream may do it before its answer reaches us: that is
		// a stream lost, below.)
		st.fail(ReasonDialFailed, &ClosedAtHandshakeError{Self: n.ID(), Peer: st.peer, Err: err})
	case errors.Is(err, io.EOF):
		st.peerEnd(st.awaitsAcks())
		st.end(ReasonConnectionLost, errors.New("peer closed the stream"), true)
	case errors.Is(err, io.ErrUnexpectedEOF):
		// The peer closed its write half within a frame (docs/PROTOCOL.md
		// §4.2): the cut frame is lost, as on a close between frames, and
		// the acks owed for the frames before it still go, as they do
		// there. A reset would drop them, and leave the fate of messages
		// already delivered unknown to their sender.
		st.peerEnd(st.awaitsAcks())
		st.end(ReasonConnectionLost, fmt.Errorf("peer closed the stream within a frame: %w", err), true)
	case frameTooLarge(err):
		// The body is not read: it may be as large as the prefix claims.
		st.refuse(ratelimit.OversizedMessage, pb.Reason_TOO_LARGE, err)
	case isTimeout(err):
		n.charge(st.peer, st.ip, ratelimit.ProtocolViolation)
		st.fail(ReasonConnectionLost, err)
	case errors.Is(err, network.ErrReset) || n.ctx.Err() != nil:
		if errors.Is(err, network.ErrReset) {
			st.peerReset(heard)
		}
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

// watch bounds the arrival of the frame being read (readFrame, frameWatch)
// with a timer rather than a read deadline, which would cost go-yamux a
// timer made, and an allocation, on every frame that does not arrive in
// one read, and another call to take the deadline back: the timer is the
// stream's, reset each time, and it touches the deadline only when it
// fires. Only the reader calls watch and unwatch.
func (st *msgStream) watch(timeout time.Duration) {
	st.rdMu.Lock()
	st.rdWatching, st.rdFired = true, false
	st.rdDue = time.Now().Add(timeout)
	st.rdMu.Unlock()
	st.rdWatch.reset(timeout, st, (*msgStream).frameOverdue)
}

func (st *msgStream) unwatch() {
	st.rdWatch.stop()
	st.rdMu.Lock()
	fired := st.rdFired
	st.rdWatching, st.rdFired = false, false
	st.rdMu.Unlock()
	if fired {
		// The frame came whole as the timer fired: the deadline it left in
		// the past would fail the next read. (A drain that set a deadline
		// meanwhile has set its flag first, which the reader looks at
		// before it reads again.)
		_ = st.s.SetReadDeadline(time.Time{})
	}
}

// frameOverdue runs on the watch's timer: the frame being read did not
// arrive within ReadTimeout, and the read waiting for it fails. A call
// whose frame came as it fired can run late, once the reader is already
// watching the next frame (stop cannot recall a callback under way): that
// frame's own due time tells them apart, or an honest peer's next frame
// would fail as a slowloris's.
func (st *msgStream) frameOverdue() {
	st.rdMu.Lock()
	defer st.rdMu.Unlock()
	if st.rdWatching && !st.rdFired && !time.Now().Before(st.rdDue) {
		st.rdFired = true
		_ = st.s.SetReadDeadline(time.Unix(1, 0))
	}
}
