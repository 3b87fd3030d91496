package p2p

import (
	"io"
	"time"
)

// Writers that must not wait for a peer: the node loop and Node.Send's
// caller (the handler's loop, under its lock) write to a stream directly
// when nothing else holds it, and flush there. The bytes awaiting acks
// (directBudget) keep such a write within the stream's flow-control window
// for a peer that reads what it acks; but acks prove nothing (a peer can
// ack our frames, numbered 1, 2, 3..., without reading them), and the acks
// we write count against the window too. A listed peer that stops reading
// could so make the direct write wait for WriteTimeout, holding the node
// loop or the handler, and every other peer's traffic with it, at no cost
// to itself.
//
// So a writer that may not wait (nowait, under wmu) gives the stream
// directWriteWait at most (the watchdog). What the stream does not take by then is kept
// in spill, and written by the spiller, a timer's goroutine that may wait
// as long as any writer (WriteTimeout). Until spill is written, every
// other write goes after it: a writer that may wait writes it first, one
// that may not adds to it only within the write that spilled (trySend
// refuses a stream with anything spilled, and the spiller writes the acks
// queued meanwhile), so spill holds at most a frame, a buffer and the acks
// the reader queues before it stops reading (maxQueuedAcks).

// directWriteWait is how long a write that may not wait for the peer gives
// the stream to take it: enough for a connection busy with another
// stream's write, nothing against a peer that does not read.
const directWriteWait = 2 * time.Millisecond

// writeNoWait writes b for a writer that may not wait, spilling what the
// stream does not take within directWriteWait. The caller holds wmu.
//
// The limit is a watchdog (nowaitExpired) rather than a write deadline of
// its own, which would cost a timer (and an allocation) on every direct
// write and another to put the long deadline back: the watchdog is one
// timer per stream, reset each time, and touches the deadline only when
// it fires.
func (w *wireWriter) writeNoWait(b []byte) (int, error) {
	st := w.st
	if len(st.spill) > 0 || proposing(w.w) {
		st.spill = append(st.spill, b...)
		return len(b), nil
	}
	d, ok := w.w.(writeDeadliner)
	if !ok {
		return w.w.Write(b)
	}
	if err := st.armWriteDeadline(d); err != nil {
		return 0, err
	}
	st.nwMu.Lock()
	st.nwWriting, st.nwFired = true, false
	st.nwMu.Unlock()
	st.watchdog.reset(directWriteWait, st, (*msgStream).nowaitExpired)
	n, err := w.w.Write(b)
	st.watchdog.stop()
	st.nwMu.Lock()
	fired := st.nwFired
	st.nwWriting, st.nwFired = false, false
	st.nwMu.Unlock()
	if !fired {
		return n, err
	}
	// The watchdog left the stream's deadline in the past: the next
	// write arms it again.
	st.wdeadline = time.Time{}
	if err != nil && isTimeout(err) {
		st.spill = append(st.spill, b[n:]...)
		return len(b), nil
	}
	return n, err
}

// proposing reports whether w is a stream we opened whose first write, the
// one that carries our proposal of the protocol (stream_open.go), has not
// begun. A writer that may not wait spills that write whole, for the
// spiller: go-multistream writes the proposal and the bytes after it
// through a buffer of its own, and when the watchdog cuts that write short
// it drops what it had not sent (all of it, when the deadline comes before
// yamux queued any), reports every byte written, and fails each later
// write with the deadline's error. writeNoWait, finding nothing to spill,
// took the bytes for sent: the peer, never given the proposal, opened no
// stream, and our messages on ours waited out their ack timeout.
func proposing(w io.Writer) bool {
	ps, ok := w.(*proposedStream)
	return ok && !ps.began.Load()
}

// nowaitExpired is the watchdog: a write that may not wait has had its
// directWriteWait, and is woken with a deadline in the past.
func (st *msgStream) nowaitExpired() {
	st.nwMu.Lock()
	defer st.nwMu.Unlock()
	if st.nwWriting && !st.nwFired {
		st.nwFired = true
		_ = st.s.SetWriteDeadline(time.Unix(1, 0))
	}
}

// writeSpill writes what is spilled, waiting up to WriteTimeout, before
// anything else reaches the stream. The caller holds wmu and may wait.
func (w *wireWriter) writeSpill() error {
	st := w.st
	if len(st.spill) == 0 {
		return nil
	}
	if d, ok := w.w.(writeDeadliner); ok {
		if err := st.armWriteDeadline(d); err != nil {
			return err
		}
	}
	_, err := w.w.Write(st.spill)
	st.spill = nil // written, or the stream fails
	return err
}

// unlockNoWait is unlockW for a holder that may not wait: it leaves
// whatever is spilled, and the acks queued behind it, to the spiller.
func (st *msgStream) unlockNoWait() {
	for {
		if len(st.spill) == 0 {
			st.settleLocked()
		}
		kick := len(st.spill) > 0 && !st.spillArmed
		if kick {
			st.spillArmed = true
		}
		st.nowait = false
		spilled := len(st.spill) > 0
		st.wmu.Unlock()
		if kick {
			st.spiller.reset(0, st, (*msgStream).writeSpilled)
		}
		if spilled || st.nacks.Load() == 0 && !st.flushReq.Load() || !st.wmu.TryLock() {
			return
		}
		st.nowait = true
	}
}

// writeSpilled is the spiller: it writes what is spilled, then the acks
// queued and what is buffered, waiting as a writer may.
func (st *msgStream) writeSpilled() {
	st.wmu.Lock()
	st.spillArmed = false
	if err := st.flushLocked(); err != nil {
		st.failWrite(err)
	}
	st.unlockW()
}
