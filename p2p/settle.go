package p2p

import "github.com/bitvmx/go-bitvmx-p2p/p2p/pb"

// Frames whose verdict Config.Accept gives later (a durable inbox writing
// them to disk) are settled by a goroutine of their stream, the settler,
// so that the reader goes on reading meanwhile: the frames a peer sends
// while one is being written are judged together, and share the next disk
// write, instead of each waiting for the previous one's. The settler
// delivers or refuses them, and owes their acks, in arrival order; the
// reader acks a frame itself only when nothing waits in the settler.

// maxStaged bounds the frames waiting for the settler: past it the reader
// stops reading the peer until the settler catches up.
const maxStaged = 256

// stagedFrame is a frame whose delivery waits for Config.Accept's verdict.
type stagedFrame struct {
	f      frame
	reason pb.Reason
	wait   func() Reason // nil: reason is the verdict
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
	st.settleQ <- sf
}

// settle is the settler: it waits for each frame's verdict, then delivers
// or refuses it, and writes the acks owed once nothing more is queued.
func (st *msgStream) settle(q <-chan stagedFrame) {
	defer close(st.settled)
	for sf := range q {
		if sf.wait != nil {
			sf.reason = reasonToWire(sf.wait())
		}
		st.ack(&sf.f, sf.reason, sf.wait != nil)
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
