package p2p

import (
	"bufio"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
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

	// refused: the peer answered a frame of ours with an id-0 ack and
	// closes the stream; set under mu (onAck), before the frame's Status.
	// Nothing of ours is written to it after that (writeLocked), and no
	// sender picks it (usable).
	refused atomic.Bool

	// Ending the stream for a DisconnectFrom or Close, drain.go.
	draining  atomic.Bool
	drainMu   sync.Mutex    // orders drain's read deadline before the reader's
	drainWait time.Duration // under drainMu

	// Read side: frames awaiting Config.Accept's verdict go, in order, to
	// the settler goroutine (settle.go), which the reader owns.
	settleQ   chan stagedFrame // nil until the first verdict to wait for
	settled   chan struct{}    // closed when the settler has exited
	unsettled atomic.Int32     // frames handed to the settler and not yet acked
	// owed: the reader delivered messages without telling the Taker,
	// which it does before it waits (handOver). The reader's alone.
	owed bool

	// A frame that has begun to arrive must end within ReadTimeout
	// (stream_read.go, watch).
	rdWatch    lazyTimer  // reset by the reader only
	rdMu       sync.Mutex // guards rdWatching, rdFired: the timer against the reader
	rdWatching bool       // the reader waits for the rest of a frame
	rdFired    bool       // the timer woke it
	rdDue      time.Time  // when the frame being watched is overdue

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
	delay        lazyTimer    // flushes lazy acks nothing else carried; reset under wmu
	wacks        []ackRec     // acks being written, under wmu
	bufAcks      int64        // acks in bw not yet counted answered, under wmu
	nowait       bool         // the holder of wmu may not wait for the peer (stream_spill.go)
	spill        []byte       // bytes a nowait holder handed the stream that it could not take at once, under wmu
	spillArmed   bool         // spiller is due to write spill, under wmu
	spiller      lazyTimer    // writes spill, waiting as long as it must (stream_spill.go); reset by whoever set spillArmed
	watchdog     lazyTimer    // wakes a nowait write past directWriteWait; reset under wmu
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
	timer   lazyTimer     // fires at the oldest pending message's ack deadline; reset under mu
	mu      sync.Mutex
	pending []outMsg // awaiting ack, oldest first: copies, so a caller's outMsg can live on its stack
	head    int
	nextID  uint64
	unacked int // payload bytes of pending
	armed   bool
	closed  bool
	// writing is the wire ID of our frame being written, 0 when none; an
	// ack of it read meanwhile leaves its Status in early for the writer
	// to report (onAck, wrote).
	writing uint64
	early   earlyStatus

	idle     lazyTimer // looks for a stream that carries nothing, stream_idle.go; reset by the reader as it starts, then by checkIdle
	lastMark idleMark  // what it had carried at the last look, under mu
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
	st.lastMark = unseen
	return st
}

// usable reports whether our messages can be written to the stream: it has
// not ended and is not being drained, nor has its connection closed, nor
// does the peer seem to be closing it (peer_closing.go).
func (st *msgStream) usable() bool {
	return !st.ended() && !st.draining.Load() && !st.refused.Load() && !st.s.Conn().IsClosed() && !st.cs.closingByPeer()
}

func (st *msgStream) ended() bool {
	select {
	case <-st.dead:
		return true
	default:
		return false
	}
}

// failWrite ends the stream after a write failed: as a refusal at the
// handshake when it is one (the writer may meet the closed connection
// before the reader does), else as a connection lost.
func (st *msgStream) failWrite(err error) {
	if st.n.refusedAtHandshake(st.s.Conn(), st.cs) {
		st.fail(ReasonDialFailed, &ClosedAtHandshakeError{Self: st.n.ID(), Peer: st.peer, Err: err})
		return
	}
	st.fail(ReasonConnectionLost, err)
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
	if pending, ok := st.claimEnd(); ok {
		st.finishEnd(pending, r, err, graceful)
	}
}

// claimEnd marks the stream ended and takes its messages awaiting acks;
// false if it had ended already. finishEnd must follow.
func (st *msgStream) claimEnd() ([]outMsg, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return nil, false
	}
	st.closed = true
	pending := st.pending[st.head:]
	st.pending, st.head = nil, 0
	return pending, true
}

// finishEnd ends the stream claimEnd claimed: each of pending gets its
// Status with r.
func (st *msgStream) finishEnd(pending []outMsg, r Reason, err error, graceful bool) {
	if st.n.cfg.endHook != nil {
		st.n.cfg.endHook(st.inbound)
	}
	close(st.dead)
	// A timer armed from here on finds the stream ended when it fires.
	st.timer.stop()
	st.delay.stop()
	st.idle.stop()
	st.spiller.stop()
	st.watchdog.stop()
	st.rdWatch.stop()
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
	// An ack that came while its frame was still being written is the
	// writer's to report (wrote), once the write returns; but Close
	// waits for this stream's gone, not for a writer outside the node's
	// goroutines (Node.Send's caller), and closes the Receiver after it.
	// While closing, it is reported here, after the reset, so that it
	// cannot be lost.
	if st.n.closing.Load() {
		st.mu.Lock()
		e := st.early
		st.early = earlyStatus{}
		st.mu.Unlock()
		if e.set {
			st.n.status(e.msg, e.reason, nil)
		}
	}
	st.n.streams.remove(st)
	st.n.forgetStream(st)
	close(st.gone)
}
