package p2p

import "github.com/bitvmx/go-bitvmx-p2p/p2p/pb"

// Frames whose verdict Config.Accept gives later (a durable inbox writing
// them to disk) are settled by a goroutine of their stream, the settler,
// so that the reader goes on reading meanwhile: the frames a peer sends
// while one is being written are judged together, and share the next disk
// write, instead of each waiting for the previous one's. The settler
// delivers or refuses them, and owes their acks, in arrival order; the
// reader acks a frame itself only when nothing waits in the settler.
//
// The settler writes the acks it owes before it may block: when nothing
// more is queued, and before a wait whose verdict is not known to be ready.
// An ack whose verdict is known so never waits for a later frame's (a disk
// write still in flight), and the acks of frames judged together, whose
// verdicts come at once, still leave in one write.

// maxStaged bounds the frames waiting for the settler: past it the reader
// stops reading the peer until the settler catches up.
const maxStaged = 256

// stagedFrame is a frame whose delivery waits for Config.Accept's verdict.
type stagedFrame struct {
	f      frame
	reason pb.Reason
	later  later // no wait: reason is the verdict
}

// later is a verdict Config.Accept gives later: wait returns it, and ready,
// when not nil, is closed once it is known (Config.AcceptReady).
type later struct {
	ready <-chan struct{}
	wait  func() Reason
}

// known reports whether wait would return at once; a verdict without a
// ready channel is never known to be.
func (l later) known() bool {
	if l.ready == nil {
		return false
	}
	select {
	case <-l.ready:
		return true
	default:
		return false
	}
}

// stage hands sf to the settler, starting it on first use. Only the reader
// calls it.
func (st *msgStream) stage(sf stagedFrame) {
	if st.settleQ == nil {
		st.settleQ = make(chan stagedFrame, maxStaged)
		st.settled = make(chan struct{})
		go st.settle(st.settleQ)
	}
	st.unsettled.Add(1)
	select {
	case st.settleQ <- sf:
	default:
		// Full: the reader waits for the settler, and hands the Taker
		// what it delivered before that, rather than hold it meanwhile.
		st.handOver()
		st.settleQ <- sf
	}
}

// settle is the settler: it waits for each frame's verdict, then delivers
// or refuses it, and writes the acks owed before it may block (above).
func (st *msgStream) settle(q <-chan stagedFrame) {
	defer close(st.settled)
	for sf := range q {
		if w := sf.later.wait; w != nil {
			if st.nacks.Load() > 0 && !sf.later.known() {
				st.pushAcks()
			}
			sf.reason = reasonToWire(w())
		}
		st.ack(&sf.f, sf.reason, sf.later.wait != nil, false)
		st.unsettled.Add(-1)
		if len(q) == 0 {
			st.pushAcks()
		}
	}
}

// stopSettler settles every frame handed to the settler and waits for it
// to exit. The reader calls it before any ack that must come after theirs,
// and before it returns, so that the settler never outlives the stream's
// reader.
func (st *msgStream) stopSettler() {
	if st.settleQ == nil {
		return
	}
	close(st.settleQ)
	<-st.settled
	st.settleQ = nil
}
