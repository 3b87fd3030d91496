package p2p

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// outMsg is one SendMsg on its way to a peer.
type outMsg struct {
	SendMsg
	wireID   uint64
	deadline time.Time
}

// directBudget bounds the bytes awaiting acks on a stream for the node loop to
// write to it directly. Well under yamux's initial stream window (256 KiB),
// so such a write never waits for the peer to read.
const directBudget = 64 << 10

// peerSender owns everything the node sends to one peer: a FIFO queue, its
// goroutine, and the stream messages are written to.
//
// The stream is our own, or the peer's when it opened one first: writing
// our messages where we write the acks of the peer's lets a reply leave
// with the ack of its request. Two streams exist only when both ends opened
// one at once; each end then keeps writing to its own, which is correct but
// shares no writes.
//
// The common case skips the queue: when a stream is open, nothing is
// queued and a write cannot block, the node loop (or Node.Send's caller)
// writes the frame itself (trySend), saving a goroutine handoff on every
// message.
type peerSender struct {
	n    *Node
	peer peer.ID
	// queued counts messages handed to the queue and not yet written; the
	// node loop may write directly only when it is zero, so that no message
	// overtakes an earlier one.
	queued atomic.Int64

	// The queue, and the goroutine that writes it: started when a message
	// is queued, ended when the queue is empty, so that an idle peer costs
	// neither.
	qmu     sync.Mutex
	q       []*outMsg // FIFO, at most Config.SendQueue
	running bool      // a run goroutine owns the queue's head

	mu sync.Mutex // guards st; trySend only TryLocks
	st *msgStream
}

func newPeerSender(n *Node, p peer.ID) *peerSender {
	return &peerSender{n: n, peer: p}
}

// enqueue hands m to the peer's goroutine, starting it if none runs, or
// answers queue_full. Only the node loop calls it, and the node's
// WaitGroup counts that loop, so adding to it here cannot race its Wait.
func (ps *peerSender) enqueue(m *outMsg) {
	ps.qmu.Lock()
	if len(ps.q) >= ps.n.cfg.SendQueue {
		ps.qmu.Unlock()
		ps.n.status(m.SendMsg, ReasonQueueFull, fmt.Errorf("%d messages already queued", ps.n.cfg.SendQueue))
		return
	}
	ps.queued.Add(1)
	m = ps.own(m)
	ps.q = append(ps.q, m)
	start := !ps.running
	ps.running = true
	ps.qmu.Unlock()
	if start {
		ps.n.wg.Add(1)
		go ps.run()
	}
}

// own returns a copy of m on the heap, for the queue to keep: the node
// loop builds its outMsg on its stack, for the usual case that writes it at
// once and queues nothing.
func (ps *peerSender) own(m *outMsg) *outMsg {
	c := *m
	return &c
}

// next takes the queue's head; ok is false, and the goroutine is to end,
// when the queue is empty.
func (ps *peerSender) next() (m *outMsg, ok bool) {
	ps.qmu.Lock()
	defer ps.qmu.Unlock()
	if len(ps.q) == 0 {
		ps.running = false
		ps.q = nil // an idle peer keeps no queue
		return nil, false
	}
	m = ps.q[0]
	ps.q[0] = nil
	ps.q = ps.q[1:]
	return m, true
}

// lastOn reports whether the message about to be written on st must be
// flushed with it: nothing waits behind it, or the next message goes on
// another stream (its SendMsg.Via, a reply on its request's stream, or
// ours when this one went by Via), whose flush would leave st's buffer
// unwritten. Otherwise the next message's write flushes both. Only the
// peer's goroutine takes from the queue, so the head it sees is the next
// message it writes. The caller holds ps.mu.
func (ps *peerSender) lastOn(st *msgStream) bool {
	ps.qmu.Lock()
	var head *outMsg
	if len(ps.q) > 0 {
		head = ps.q[0]
	}
	ps.qmu.Unlock()
	if head == nil {
		return true
	}
	next := ps.via(head)
	if next == nil {
		next = ps.stream()
	}
	return next != st
}

// forgetStream drops an ended stream from its peer's sender, which would
// otherwise keep it, with its timers and any buffer it held, until the next
// message to the peer: for a quiet peer, for ever. A sender busy meanwhile
// (its lock held, maybe by the writer whose failure ended st) replaces st
// itself, being unusable, when it next looks.
func (n *Node) forgetStream(st *msgStream) {
	n.sendersMu.Lock()
	ps := n.senders[st.peer]
	n.sendersMu.Unlock()
	if ps == nil || !ps.mu.TryLock() {
		return
	}
	if ps.st == st {
		ps.st = nil
	}
	ps.mu.Unlock()
}

// stream is the stream to write to: the current one while it lasts, then
// any other open with the peer. The caller holds ps.mu.
func (ps *peerSender) stream() *msgStream {
	if ps.st == nil || !ps.st.usable() {
		ps.st = ps.n.streams.pick(ps.peer)
	}
	return ps.st
}

// via is the stream m asks to go on (SendMsg.Via), if it still can.
func (ps *peerSender) via(m *outMsg) *msgStream {
	if st := m.Via.st; st != nil && st.peer == ps.peer && st.usable() {
		return st
	}
	return nil
}

// trySend writes m if that is safe and cannot block: nothing queued ahead
// of it, a stream open, and that stream able to take m at once
// (msgStream.trySend). It returns the stream m was written to, nil if it
// did not take m. Unless flush, the frame is left buffered, for the node
// loop to flush once its input is drained, so a burst of messages leaves in
// few writes.
func (ps *peerSender) trySend(m *outMsg, flush bool) *msgStream {
	if len(m.Data) > directBudget || ps.queued.Load() != 0 || !ps.mu.TryLock() {
		return nil
	}
	defer ps.mu.Unlock()
	st := ps.via(m)
	if st == nil {
		st = ps.stream()
	}
	if st == nil || ps.queued.Load() != 0 || !st.trySend(m, flush) {
		return nil
	}
	return st
}

// run writes queued messages until the queue is empty. Once the node is
// closing it fails them instead: the node loop, which queues them, has
// stopped, so the queue only shrinks.
func (ps *peerSender) run() {
	defer ps.n.wg.Done()
	for {
		m, ok := ps.next()
		if !ok {
			return
		}
		if ps.n.ctx.Err() != nil {
			ps.n.status(m.SendMsg, ReasonClosed, nil)
		} else {
			ps.mu.Lock()
			ps.deliver(m)
			ps.mu.Unlock()
		}
		ps.queued.Add(-1)
	}
}

// deliver writes one queued message, opening a stream (and dialing) first if
// needed. The caller holds ps.mu.
func (ps *peerSender) deliver(m *outMsg) {
	// A stream that died before m was written is replaced once; a second
	// failure is reported rather than retried forever. The stream that
	// failed is not the replacement: its end may have begun without its
	// being marked ended yet (msgStream.end), so that it still looks
	// usable, as when the peer closed it idle as m came.
	var failed *msgStream
	if st := ps.via(m); st != nil {
		if st.send(m, ps.lastOn(st)) {
			return
		}
		failed = st
	}
	for attempt := 0; ; attempt++ {
		st := ps.stream()
		if st != nil && st == failed {
			st, ps.st = nil, nil
		}
		if st == nil {
			var err error
			if st, err = ps.open(m); err != nil {
				ps.n.status(m.SendMsg, dialReason(ps.n.ctx, err), err)
				return
			}
			ps.st = st
			if ps.n.cfg.openedHook != nil {
				ps.n.cfg.openedHook()
			}
		}
		// st, not ps.st: lastOn may replace ps.st (with nil, when the
		// stream has just died), and the order in which a call's receiver
		// and arguments are read is not the language's to keep.
		if st.send(m, ps.lastOn(st)) {
			return
		}
		failed = st
		if attempt > 0 {
			ps.n.status(m.SendMsg, ReasonConnectionLost, errors.New("stream closed before the message was written"))
			return
		}
	}
}

// maxOpenAttempts bounds the streams open refuses because a
// DisconnectFrom began closing their connection as they were opened: each
// needs a new DisconnectFrom of the peer in that window.
const maxOpenAttempts = 3

// open connects to the peer if needed, then opens a message stream.
//
// A connection being closed (DisconnectFrom), or that the peer seems to be
// closing (peer_closing.go), takes no new stream: the message goes on a
// fresh one once it is gone. A DisconnectFrom that
// begins after the wait for that, and lists the connection's streams to
// drain before this one joins them, would not drain it: a reply the peer
// wrote on it could be taken and then closed with the connection without
// its ack. So, as for a stream the peer opens (handleStream), the
// connection is looked at again once the stream is in the set; nothing
// has been written to it yet, and it is ended and opened anew.
func (ps *peerSender) open(m *outMsg) (*msgStream, error) {
	n := ps.n
	for attempt := 1; ; attempt++ {
		n.draining.wait(ps.peer, n.ctx.Done())
		n.waitPeerClosing(ps.peer)
		if n.cfg.openHook != nil {
			n.cfg.openHook()
		}
		st, err := ps.openOnce(m)
		if err != nil {
			return nil, err
		}
		n.streams.add(st, 0)
		if !n.draining.closing(ps.peer, st.s.Conn()) {
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				st.serve()
			}()
			return st, nil
		}
		st.fail(ReasonConnectionLost, errDraining)
		if attempt == maxOpenAttempts {
			return nil, fmt.Errorf("open a stream: %w (%d times)", errKeptClosing, attempt)
		}
	}
}

// errKeptClosing fails a message whose streams were opened each time on
// a connection a DisconnectFrom had just begun to close.
var errKeptClosing = errors.New("the connection was being closed")

// openOnce is one attempt of open: it returns a stream not yet in the
// node's set, nor served.
func (ps *peerSender) openOnce(m *outMsg) (*msgStream, error) {
	n := ps.n
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.DialTimeout)
	defer cancel()
	ctx = network.WithAllowLimitedConn(ctx, "relayed connections carry messages") // relay.go
	dial := func() (network.Conn, error) {
		if m.Addr != nil {
			n.host.Peerstore().AddAddr(ps.peer, m.Addr, peerstore.TempAddrTTL)
		}
		if len(n.host.Peerstore().Addrs(ps.peer)) == 0 {
			if n.wrong.anyFor(ps.peer) {
				return nil, fmt.Errorf("%w: %w, and is not dialed for it for %v", errNotConnected, ErrWrongAddress, n.wrong.ttl)
			}
			return nil, errNotConnected
		}
		c, err := n.dialPeer(ctx, ps.peer)
		if err != nil && errors.Is(err, swarm.ErrGaterDisallowedConnection) && n.limiter.PeerBanned(string(ps.peer)) {
			// Our own gater refused a listed peer (InterceptPeerDial):
			// the Status says rejected, and its error must not leave the
			// operator looking for a missing entry or a refusal by the peer.
			err = fmt.Errorf("%w: %w", ErrPeerCutOff, err)
		}
		return c, err
	}
	var (
		conn network.Conn // the connection dialed for this stream, if any
		cs   *connState   // conn's state, taken before the stream's opening
	)
	if c := n.host.Network().Connectedness(ps.peer); c != network.Connected && c != network.Limited {
		var err error
		if conn, err = dial(); err != nil {
			return nil, err
		}
		cs = n.conns.of(conn)
	}
	s, err := n.openStream(ctx, ps.peer, conn)
	if err != nil && conn == nil && errors.Is(err, network.ErrNoConn) && ctx.Err() == nil {
		// The connection closed since we looked: dial once. Not after a
		// dial of our own: a peer closing the connection just made is
		// refusing us, and a second dial would be charged twice.
		if conn, err = dial(); err != nil {
			return nil, err
		}
		cs = n.conns.of(conn)
		s, err = n.openStream(ctx, ps.peer, conn)
	}
	if err != nil {
		if conn != nil && ctx.Err() == nil && n.refusedAtHandshake(conn, cs) {
			return nil, &ClosedAtHandshakeError{Self: n.ID(), Peer: ps.peer, Err: err}
		}
		return nil, err
	}
	return n.newMsgStream(s, false), nil
}

var errNotConnected = errors.New("not connected and no address known")

func dialReason(ctx context.Context, err error) Reason {
	switch {
	case ctx.Err() != nil:
		return ReasonClosed
	case errors.Is(err, errNotConnected):
		return ReasonNotConnected
	case errors.Is(err, swarm.ErrGaterDisallowedConnection):
		return ReasonRejected
	default:
		return ReasonDialFailed
	}
}
