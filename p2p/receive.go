package p2p

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// ErrNotRouted is the Error event's error for a message the routing table
// refused.
var ErrNotRouted = errors.New("p2p: message not permitted by the routing table")

// handleStream serves a message stream the peer opened. Past the peer's
// cap on streams it is refused: an honest peer needs one.
func (n *Node) handleStream(s network.Stream) {
	st := n.newMsgStream(s, true)
	if n.closingConn(st) {
		// Its connection is about to close: nothing it sends now could
		// be acked. Not the peer's fault.
		s.Reset()
		return
	}
	if !n.streams.add(st, n.cfg.StreamsPerPeer) {
		n.charge(st.peer, st.ip, ratelimit.ProtocolViolation)
		s.Reset()
		return
	}
	if n.cfg.streamAddedHook != nil {
		n.cfg.streamAddedHook()
	}
	if n.closingConn(st) {
		// A DisconnectFrom took its list of streams to drain between the
		// check above and the add (this one is not on it), or Close began.
		// A message of ours may have been written to it since the add (the
		// node loop and Send's fast path write to the newest stream): the
		// end gives it its Status now, as to the connection's other
		// streams, rather than leave it to an ack timeout charged to the
		// peer, or to no one once Close has passed.
		st.fail(ReasonConnectionLost, errDraining)
		return
	}
	st.serve()
}

// closingConn reports whether st's connection is being closed: the node
// is closing, or a DisconnectFrom is draining the connection.
func (n *Node) closingConn(st *msgStream) bool {
	return n.closing.Load() || n.draining.closing(st.peer, st.s.Conn())
}

// judge decides whether a frame may be delivered: the node's own checks,
// then Config.Accept's (or AcceptReady's) verdict, or the wait that will
// give it. OK frames are
// then offered to the Receiver (msgStream.ack).
func (n *Node) judge(st *msgStream, f *frame) (pb.Reason, later) {
	if r := n.admit(st.peer, st.ip, f); r != pb.Reason_OK {
		return r, later{}
	}
	if n.cfg.accept != nil {
		verdict, ready, wait := n.cfg.accept(n.data(st, f))
		if wait != nil {
			return pb.Reason_OK, later{ready, wait}
		}
		return reasonToWire(verdict), later{}
	}
	return pb.Reason_OK, later{}
}

// admit applies the node's own checks to a frame from p at ip.
func (n *Node) admit(p peer.ID, ip netip.Addr, f *frame) pb.Reason {
	if n.closing.Load() || n.ctx.Err() != nil {
		return pb.Reason_SHUTTING_DOWN
	}
	// The allowlist may have dropped the peer since its connection was
	// admitted; the connection is closing, and nothing more of it may be
	// delivered meanwhile.
	if !n.cfg.Allowlist.Allowed(p, ip) {
		return pb.Reason_NOT_ALLOWLISTED
	}
	if n.limiter.PeerBanned(string(p)) {
		return pb.Reason_RATE_LIMITED
	}
	if !n.cfg.Routes.Permits(p, f.fromChannel, f.channel) {
		n.events.Push(Error{Peer: p, Err: fmt.Errorf("%w: from channel %d to channel %d", ErrNotRouted, f.fromChannel, f.channel)}, false)
		return pb.Reason_NOT_ROUTED
	}
	return pb.Reason_OK
}

// offer delivers an admitted frame, or answers busy when the Receiver
// buffer is full. A frame Config.Accept took (through a wait) is not
// refused when there is a Config.Overflow: offer reports it overflowed,
// for the caller to hand over once outside its lock. reader says the
// caller is the stream's reader, which then owes the Taker a Take
// (msgStream.owed).
func (n *Node) offer(st *msgStream, f *frame, taken, reader bool) (r pb.Reason, overflowed bool) {
	if n.events.offerData(n.data(st, f), reader) {
		return pb.Reason_OK, false
	}
	if taken && n.cfg.Overflow != nil {
		return pb.Reason_OK, true
	}
	n.metrics.droppedOne()
	n.prio.Push(Dropped{Peer: st.peer, MsgID: f.id, Count: 1}, false)
	return pb.Reason_BUSY, false
}

func (n *Node) data(st *msgStream, f *frame) Data {
	return Data{From: st.peer, Channel: f.channel, FromChannel: f.fromChannel, Bytes: f.payload, Origin: Origin{st}}
}

// isTimeout reports a read deadline: yamux returns its own timeout error,
// which has Timeout() but is not os.ErrDeadlineExceeded.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &t) && t.Timeout())
}

// streamSet holds the node's open message streams, by peer: for a sender
// to find a stream the peer opened, for the cap on inbound streams, and for
// Close to end them all.
type streamSet struct {
	mu     sync.Mutex
	byPeer map[peer.ID][]*msgStream
}

// add records st. An inbound stream is refused when the peer already holds
// limit of them open.
func (ss *streamSet) add(st *msgStream, limit int) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	list := ss.byPeer[st.peer]
	if st.inbound {
		in := 0
		for _, o := range list {
			if o.inbound {
				in++
			}
		}
		if in >= limit {
			return false
		}
	}
	if ss.byPeer == nil {
		ss.byPeer = make(map[peer.ID][]*msgStream)
	}
	ss.byPeer[st.peer] = append(list, st)
	return true
}

func (ss *streamSet) remove(st *msgStream) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	list := slices.DeleteFunc(ss.byPeer[st.peer], func(o *msgStream) bool { return o == st })
	if len(list) == 0 {
		delete(ss.byPeer, st.peer)
	} else {
		ss.byPeer[st.peer] = list
	}
}

// pick returns the newest usable stream with p, or nil.
func (ss *streamSet) pick(p peer.ID) *msgStream {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	list := ss.byPeer[p]
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].usable() {
			return list[i]
		}
	}
	return nil
}

// of returns the open streams with p.
func (ss *streamSet) of(p peer.ID) []*msgStream {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return slices.Clone(ss.byPeer[p])
}

// all returns every open stream.
func (ss *streamSet) all() []*msgStream {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var out []*msgStream
	for _, list := range ss.byPeer {
		out = append(out, list...)
	}
	return out
}
