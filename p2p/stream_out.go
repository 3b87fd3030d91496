package p2p

import (
	"fmt"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// Our messages on a msgStream: written in order, each holding one in-flight
// slot until its ack, which the reader matches in the same order (onAck).

// tryReserve takes an in-flight slot without waiting, if the bytes awaiting
// acks stay within directBudget.
func (st *msgStream) tryReserve(size int) bool {
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

// trySend writes m without waiting for anything: the write lock free, a
// slot free, the bytes awaiting acks within directBudget. Unless flush, the
// frame is left buffered for the caller to flush. With flush it leaves at
// once if m is the only message of ours awaiting its ack, and otherwise
// once the node's loop has yielded (Node.flushLater). It reports whether
// it took m.
func (st *msgStream) trySend(m *outMsg, flush bool) bool {
	if !st.wmu.TryLock() {
		return false
	}
	st.nowait = true
	defer st.unlockNoWait()
	if len(st.spill) > 0 || !st.tryReserve(len(m.Data)) || !st.writeLocked(m) {
		return false
	}
	if flush {
		if len(st.slots) > 1 {
			// Others of ours await their acks: the caller, or others
			// like it, are likely about to send more, which can share
			// this write (Node.flushLater).
			st.n.flushLater(st)
		} else {
			st.flushReq.Store(true)
		}
	}
	return true
}

// send writes m, waiting for an in-flight slot and the write lock. It
// returns false when the stream ended before m was written (m may be
// retried elsewhere); once m is written, its Status is this stream's
// business and send returns true.
func (st *msgStream) send(m *outMsg, flush bool) bool {
	select {
	case st.slots <- struct{}{}:
	default:
		// Nothing more may be in flight: push out what is buffered, so the
		// acks that free a slot can come back, then wait.
		st.requestFlush()
		select {
		case st.slots <- struct{}{}:
		case <-st.dead:
			return false
		}
	}
	st.wmu.Lock()
	defer st.unlockW()
	if flush {
		st.flushReq.Store(true)
	}
	return st.writeLocked(m)
}

// writeLocked registers m as awaiting its ack and appends its frame. It
// returns false when the stream has ended. The caller holds the write lock
// and a slot.
func (st *msgStream) writeLocked(m *outMsg) bool {
	st.mu.Lock()
	if st.closed || st.wclosed || st.refused.Load() {
		st.mu.Unlock()
		return false
	}
	st.unacked += len(m.Data)
	st.nextID++
	m.wireID = st.nextID
	st.writing = m.wireID
	m.deadline = time.Now().Add(st.n.cfg.AckTimeout)
	st.pending = append(st.pending, *m)
	if !st.armed {
		st.armed = true
		st.timer.reset(st.n.cfg.AckTimeout, st, (*msgStream).checkTimeout)
	}
	st.mu.Unlock()
	// Acks owed go first: m may answer a message whose ack is queued (or
	// being queued: writeAcksLocked waits for onData), and must not
	// overtake it.
	if st.writeAcksLocked() {
		st.flushReq.Store(true)
	}
	st.n.metrics.written(len(m.Data))
	err := st.writeDataLocked(m)
	st.wrote()
	if err != nil {
		st.failWrite(err)
	}
	return true
}

// earlyStatus is the Status of an ack that the reader matched while the
// frame it acks was still being written.
type earlyStatus struct {
	msg    SendMsg
	reason Reason
	set    bool
}

// wrote ends the write of our frame (writeLocked) and reports the Status
// its ack brought meanwhile, if one did. A conforming peer acks a frame
// only once it has read all of it, so that happens only when the goroutine
// that wrote was slow to come back; but a peer can ack blind (our wire IDs
// are 1, 2, 3...), and a Status reported while the write still reads Data
// would tell the caller that Data is free when it is not (SendMsg.Data).
func (st *msgStream) wrote() {
	st.mu.Lock()
	st.writing = 0
	e := st.early
	st.early = earlyStatus{}
	st.mu.Unlock()
	if e.set {
		st.n.status(e.msg, e.reason, nil)
	}
}

// checkTimeout runs when the oldest pending message's ack may be overdue.
func (st *msgStream) checkTimeout() {
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
		st.timer.reset(wait, st, (*msgStream).checkTimeout)
		st.mu.Unlock()
		return
	}
	st.mu.Unlock()
	// The stream is claimed before the charge, whose ban closes the
	// connection: the messages awaiting acks then fail ack_timeout, what
	// happened to them, not connection_lost. Their Statuses still follow
	// the charge.
	pending, ok := st.claimEnd()
	if !ok {
		return
	}
	st.n.charge(st.peer, st.ip, ratelimit.UnansweredAck)
	st.finishEnd(pending, ReasonAckTimeout, fmt.Errorf("no ack within %s", st.n.cfg.AckTimeout), false)
}
