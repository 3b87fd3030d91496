package p2p

import (
	"bufio"
	"io"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// The write side of a msgStream. Four kinds of goroutine write to it: the
// node loop (our messages, without blocking), the peer's sender goroutine
// (our messages, waiting when it must), the reader (acks) and the ack-delay
// timer. The reader must never wait on a writer: a writer can be stuck on
// the peer's flow-control window, and only the reader reading the peer's
// frames keeps the peer able to read ours. So acks are queued, and written
// by whoever holds the write lock when it lets go (unlockW).
//
// When an ack is written it is flushed at once, unless the message asked
// for a lazy ack (and was delivered): then it waits in the buffer for the
// next flush of our own Data, for at most Config.AckDelay. A request's ack
// so leaves with its reply, one write instead of two.

// ackRec is an ack owed, until it is encoded.
type ackRec struct {
	id     uint64
	reason pb.Reason
}

// queueAck owes the peer ack a.
func (st *msgStream) queueAck(a ackRec, lazy bool) {
	st.amu.Lock()
	st.queueAckLocked(a, lazy)
	st.amu.Unlock()
}

// queueAckLocked is queueAck for a caller holding amu.
func (st *msgStream) queueAckLocked(a ackRec, lazy bool) {
	st.acks = append(st.acks, a)
	st.urgent = st.urgent || !lazy
	st.nacks.Store(int32(len(st.acks)))
}

// pushAcks writes the acks owed, unless another writer holds the stream;
// that writer then writes them as it lets go.
func (st *msgStream) pushAcks() {
	if st.wmu.TryLock() {
		st.unlockW()
	}
}

// requestFlush has everything buffered written now, by this goroutine or by
// the writer holding the stream.
func (st *msgStream) requestFlush() {
	st.flushReq.Store(true)
	if st.wmu.TryLock() {
		st.nowait = true
		st.unlockNoWait()
	}
}

// unlockW releases the write lock, first writing the acks queued while it
// was held and flushing if that was asked for. Every holder leaves through
// here, so nothing is stranded: a goroutine whose TryLock failed queued its
// work before trying, and the holder looks again after unlocking.
func (st *msgStream) unlockW() {
	for {
		st.settleLocked()
		st.wmu.Unlock()
		if st.nacks.Load() == 0 && !st.flushReq.Load() || !st.wmu.TryLock() {
			return
		}
	}
}

// settleLocked writes the queued acks, then flushes when an ack may not
// wait or a flush was asked for. Otherwise lazy acks stay buffered for the
// next flush, and the delay timer makes sure there is one.
func (st *msgStream) settleLocked() {
	urgent := st.writeAcksLocked()
	if st.flushReq.Swap(false) || urgent {
		if err := st.flushLocked(); err != nil {
			st.failWrite(err)
		}
		return
	}
	if st.lazyBuffered && !st.delayArmed {
		st.delayArmed = true
		st.delay.reset(st.n.cfg.AckDelay, st, (*msgStream).delayExpired)
	}
}

// writeAcksLocked moves the queued acks into the buffer. It reports whether
// one of them may not wait. It takes amu even when nothing seems queued: a
// message being delivered holds it until its ack is queued (onData).
func (st *msgStream) writeAcksLocked() (urgent bool) {
	st.amu.Lock()
	st.acks, st.wacks = st.wacks[:0], st.acks
	urgent, st.urgent = st.urgent, false
	st.nacks.Store(0)
	st.amu.Unlock()
	for _, a := range st.wacks {
		// Counted before it is written: bw may pass it on to the wire
		// within this write (wireWriter).
		st.bufAcks++
		// A failed write shows again at the flush, which handles it.
		_ = writeAckFrame(st.writer(), a.id, a.reason)
	}
	if len(st.wacks) > 0 {
		// Until a Data frame of ours follows them and is acked, nothing
		// tells that the peer has read them (drain.go).
		st.ackTail = true
		if !urgent {
			st.lazyBuffered = true
		}
	}
	return urgent
}

// writeDataLocked appends the frame of one of our messages.
func (st *msgStream) writeDataLocked(m *outMsg) error {
	// The acks before it are confirmed read with its own ack.
	st.ackTail = false
	return writeDataFrame(st.writer(), m.wireID, m.Channel, m.FromChannel, m.LazyAck, m.Data)
}

// flushLocked writes out the buffer, under a write deadline (wireWriter), so
// a peer that stops reading cannot hold a writer for longer than
// Config.WriteTimeout.
func (st *msgStream) flushLocked() error {
	st.lazyBuffered = false
	if st.delayArmed {
		// The lazy acks leave now: a timer firing later would find nothing.
		st.delayArmed = false
		st.delay.stop()
	}
	if st.bw == nil || st.bw.Buffered() == 0 {
		if st.bw != nil {
			st.releaseWriter()
		}
		if st.nowait {
			return nil // the spiller writes what is spilled
		}
		return st.ww.writeSpill()
	}
	if err := st.bw.Flush(); err != nil {
		return err
	}
	st.releaseWriter()
	return nil
}

// armWriteDeadline makes sure the stream's write deadline is at least half
// a WriteTimeout away, before anything reaches the stream: a flush, and
// also the writes bufio makes by itself when a frame does not fit in what
// is left of the buffer (a large payload), which a deadline armed only at
// flushes would meet expired once the stream had been quiet for longer
// than WriteTimeout. Re-arming it on every write costs a timer each time;
// doing it only when less than half of it is left still bounds every
// write to between half and all of the timeout. The caller holds the
// write lock.
func (st *msgStream) armWriteDeadline(s writeDeadliner) error {
	timeout := st.n.cfg.WriteTimeout
	if now := time.Now(); st.wdeadline.Sub(now) < timeout/2 {
		st.wdeadline = now.Add(timeout)
		return s.SetWriteDeadline(st.wdeadline)
	}
	return nil
}

type writeDeadliner interface {
	SetWriteDeadline(time.Time) error
}

// writer is the write buffer, borrowed if the stream holds none. The
// caller holds the write lock.
func (st *msgStream) writer() *bufio.Writer {
	if st.bw == nil {
		st.bw = st.n.bufs.writer(&st.ww)
	}
	return st.bw
}

// releaseWriter gives back the write buffer, which holds nothing: an idle
// stream keeps none. The caller holds the write lock.
func (st *msgStream) releaseWriter() {
	st.n.bufs.putWriter(st.bw)
	st.bw = nil
}

// delayExpired flushes lazy acks that no message of ours carried in time.
func (st *msgStream) delayExpired() {
	st.wmu.Lock()
	st.delayArmed = false
	if st.lazyBuffered {
		if err := st.flushLocked(); err != nil {
			st.failWrite(err)
		}
	}
	st.unlockW()
}

// flushAll writes every ack owed and everything buffered, waiting for the
// write lock: the stream's last write before a graceful close.
func (st *msgStream) flushAll() error {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.writeAcksLocked()
	return st.flushLocked()
}

// wireWriter is what bw writes to: the stream, under a write deadline
// (armWriteDeadline), counting the acks in the buffer answered as their
// bytes leave (docs/PROTOCOL.md §4.6). Counting
// them before the write, never after, keeps the receiver's count of a
// peer's unanswered frames at or below the peer's own count of its frames
// in flight: a peer that keeps the limit is never refused.
type wireWriter struct {
	st *msgStream
	w  io.Writer // the stream
}

func (w *wireWriter) Write(b []byte) (int, error) {
	if w.st.bufAcks > 0 {
		w.st.answered.Add(w.st.bufAcks)
		w.st.bufAcks = 0
	}
	if w.st.nowait {
		return w.writeNoWait(b)
	}
	if err := w.writeSpill(); err != nil {
		return 0, err
	}
	if d, ok := w.w.(writeDeadliner); ok {
		if err := w.st.armWriteDeadline(d); err != nil {
			return 0, err
		}
	}
	return w.w.Write(b)
}
