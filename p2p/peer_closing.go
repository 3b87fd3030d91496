package p2p

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A connection the peer is closing. When the peer's DisconnectFrom (or the
// handler's close after an exchange) drains a connection, the peer reads
// nothing more it is sent on it and resets every stream opened on it
// (docs/PROTOCOL.md §5), until it closes it, which can take up to its
// drain's bound when either side is slow. The peer says nothing of this on
// the wire: this node sees a stream of the connection end gracefully, as it
// also does when the peer closes a stream idle for StreamIdleTimeout and
// keeps the connection. A message sent meanwhile on that connection fails
// as connection lost, and so does each resend of it, until the connection
// is gone: a caller that resends a few times with short backoffs (the
// handler) could spend all its attempts there.
//
// So the node takes a connection for one the peer is closing when it has
// seen the peer do more than an idle close allows:
//
//   - the peer ended a stream on it while a message of ours awaited its
//     ack there (the peer took no message after it began its end, so this
//     one was not delivered; an idle close begins only when nothing is in
//     flight, so it meets one of ours only when both cross); or
//   - a stream this node opened on it, after the peer had ended another
//     one there, was reset before the peer sent anything on it: what the
//     peer does to streams opened on a connection it drains.
//
// The message that showed it fails as before (connection lost): what it
// met is unchanged. But from then on no stream on that connection is
// picked (msgStream.usable) and none is opened there (peerSender.open):
// the next message waits for the connection to go, then dials a new one.
// The wait is bounded: after an ended stream with our message in it, by
// the drain's wait (the peer waits that long at most for our end, which
// we wrote as we read its own); after a refused stream, by the drain's
// wait and a write timeout, the whole of the peer's drain. A connection
// still open past the bound was not being closed after all (an idle close
// crossing our message): it is used again.

// peerEnd records that the peer ended st gracefully; awaiting says a
// message of ours awaited its ack on it then. It comes before those
// messages' Status, so that their resend finds the connection marked.
func (st *msgStream) peerEnd(awaiting bool) {
	st.cs.peerEnded.Store(true)
	if awaiting {
		st.cs.markPeerClosing(st.n.drainWait())
	}
}

// peerReset notes a reset of st by the peer; heard says the peer had sent
// something on it.
func (st *msgStream) peerReset(heard bool) {
	if !st.inbound && !heard && st.cs.peerEnded.Load() {
		st.cs.markPeerClosing(st.n.drainWait() + st.n.cfg.WriteTimeout)
	}
}

// markPeerClosing takes the connection for one the peer is closing, for
// at most bound from now (or longer, if marked so already).
func (cs *connState) markPeerClosing(bound time.Duration) {
	till := time.Now().Add(bound).UnixNano()
	for {
		old := cs.closingTill.Load()
		if old >= till || cs.closingTill.CompareAndSwap(old, till) {
			break
		}
	}
	cs.peerClosing.Store(true)
}

// closingByPeer reports whether the connection is taken for one the peer
// is closing, now. peerClosing spares the clock to every other connection.
func (cs *connState) closingByPeer() bool {
	return cs.peerClosing.Load() && time.Now().UnixNano() < cs.closingTill.Load()
}

// waitPeerClosing returns once no connection to p is one the peer is
// closing: each has closed, or its bound has passed, or the node is
// closing.
func (n *Node) waitPeerClosing(p peer.ID) {
	for _, c := range n.host.Network().ConnsToPeer(p) {
		cs := n.conns.of(c)
		// Bounded: each turn waits for the bound, which only a new reset
		// or end by the peer extends.
		for cs.closingByPeer() {
			if n.cfg.peerClosingHook != nil {
				n.cfg.peerClosingHook()
			}
			t := time.NewTimer(time.Until(time.Unix(0, cs.closingTill.Load())))
			gone := false
			select {
			case <-n.conns.goneCh(c, cs):
				gone = true
			case <-t.C:
			case <-n.ctx.Done():
			}
			t.Stop()
			if n.ctx.Err() != nil {
				return
			}
			if gone || c.IsClosed() {
				break
			}
		}
	}
}
