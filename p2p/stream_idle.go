package p2p

// Closing a stream that carries nothing (Config.StreamIdleTimeout). An idle
// message stream holds a reader goroutine at each end, blocked on the peer,
// plus its state in yamux and here: on a connection kept for later
// exchanges that is most of what the connection costs. Either end may close
// a stream with nothing in flight (docs/PROTOCOL.md §4.1); this node drains
// it the way a disconnection does (drain.go): acks owed are written, the
// write half is closed, the peer's acks of our messages are read until the
// peer closes its half. The connection stays; the next message opens a new
// stream.
//
// A timer per stream looks every StreamIdleTimeout at what the stream has
// carried: if no message went either way since the previous look, and no
// message of ours awaits its ack, the stream is drained. So a
// stream closes between one and two timeouts after its last message, and
// the hot path pays nothing for it (no deadline set per read).

// idleMark is what a stream has carried so far: when it has not changed
// over a whole timeout, the stream was idle for that long.
type idleMark struct {
	sent     uint64 // our Data frames written (nextID)
	received int64  // the peer's Data frames read
}

// unseen is the mark before the first look, which no stream matches: a
// stream gets a whole timeout to carry its first frame.
var unseen = idleMark{sent: ^uint64(0)}

// watchIdle starts the idle timer; the reader calls it as it starts.
func (st *msgStream) watchIdle() {
	if st.n.cfg.StreamIdleTimeout <= 0 {
		return
	}
	st.idle.reset(st.n.cfg.StreamIdleTimeout, st, (*msgStream).checkIdle)
}

// checkIdle runs on the idle timer.
func (st *msgStream) checkIdle() {
	if st.ended() || st.draining.Load() {
		return
	}
	st.mu.Lock()
	mark := idleMark{sent: st.nextID, received: st.received.Load()}
	quiet := mark == st.lastMark && st.head == len(st.pending) && st.unsettled.Load() == 0
	st.lastMark = mark
	st.mu.Unlock()
	if !quiet {
		st.idle.reset(st.n.cfg.StreamIdleTimeout, st, (*msgStream).checkIdle)
		return
	}
	st.n.metrics.streamIdleClosed()
	st.drain(st.n.drainWait())
}
