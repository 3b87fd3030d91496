package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// outMsg is one SendMsg on its way to a peer.
type outMsg struct {
	SendMsg
	wireID   uint64
	deadline time.Time
}

// peerSender owns everything the node sends to one peer: a FIFO queue, and
// the stream the queued messages are written to. Its goroutine is the only
// writer of that stream; each stream has one more goroutine reading acks.
type peerSender struct {
	n     *Node
	peer  peer.ID
	queue chan *outMsg
	frame pb.Data // reused for every frame written
}

func newPeerSender(n *Node, p peer.ID) *peerSender {
	return &peerSender{n: n, peer: p, queue: make(chan *outMsg, n.cfg.SendQueue)}
}

// run writes queued messages until the node closes, then fails what is left.
func (ps *peerSender) run() {
	defer ps.n.wg.Done()
	var st *outStream
	defer func() {
		if st != nil {
			st.fail(ReasonClosed, nil)
		}
		for {
			select {
			case m := <-ps.queue:
				ps.n.status(m.SendMsg, ReasonClosed, nil)
			default:
				return
			}
		}
	}()
	for {
		var m *outMsg
		select {
		case m = <-ps.queue:
		case <-ps.n.ctx.Done():
			return
		}
		// A stream that died before m was written is replaced once; a second
		// failure is reported rather than retried forever.
		for attempt := 0; ; attempt++ {
			if st == nil || st.isDead() || st.s.Conn().IsClosed() {
				var err error
				if st, err = ps.open(m); err != nil {
					st = nil
					ps.n.status(m.SendMsg, dialReason(ps.n.ctx, err), err)
					break
				}
			}
			if st.send(m, len(ps.queue) == 0) {
				break
			}
			if attempt > 0 {
				ps.n.status(m.SendMsg, ReasonConnectionLost, errors.New("stream closed before the message was written"))
				break
			}
		}
	}
}

// open connects to the peer if needed, then opens a message stream.
func (ps *peerSender) open(m *outMsg) (*outStream, error) {
	n := ps.n
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.DialTimeout)
	defer cancel()
	if n.host.Network().Connectedness(ps.peer) != network.Connected {
		if m.Addr != nil {
			n.host.Peerstore().AddAddr(ps.peer, m.Addr, peerstore.TempAddrTTL)
		}
		if len(n.host.Peerstore().Addrs(ps.peer)) == 0 {
			return nil, errNotConnected
		}
		if err := n.host.Connect(ctx, peer.AddrInfo{ID: ps.peer}); err != nil {
			return nil, err
		}
	}
	s, err := n.host.NewStream(ctx, ps.peer, ProtocolID)
	if err != nil {
		return nil, err
	}
	st := &outStream{
		n:     n,
		peer:  ps.peer,
		s:     s,
		bw:    bufio.NewWriterSize(s, streamBufSize),
		slots: make(chan struct{}, n.cfg.MaxInFlight),
		dead:  make(chan struct{}),
	}
	st.timer = time.AfterFunc(time.Hour, st.checkTimeout)
	st.timer.Stop()
	n.wg.Add(1)
	go st.readAcks()
	return st, nil
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

// outStream is one message stream to a peer: frames written in order, acks
// read in the same order.
type outStream struct {
	n     *Node
	peer  peer.ID
	s     network.Stream
	bw    *bufio.Writer
	slots chan struct{} // one token per frame awaiting its ack
	timer *time.Timer   // fires at the oldest pending frame's ack deadline
	dead  chan struct{}

	mu      sync.Mutex
	pending []*outMsg // awaiting ack, oldest first
	head    int
	nextID  uint64
	armed   bool
	closed  bool
}

func (st *outStream) isDead() bool {
	select {
	case <-st.dead:
		return true
	default:
		return false
	}
}

// send writes m, waiting for an in-flight slot first. It returns false when
// the stream died before m was written (m may be retried); once m is
// written, its Status is this stream's business and send returns true.
func (st *outStream) send(m *outMsg, flush bool) bool {
	select {
	case st.slots <- struct{}{}:
	default:
		// Nothing more may be in flight: push out what is buffered, so the
		// acks that free a slot can come back, then wait.
		if err := st.bw.Flush(); err != nil {
			st.fail(ReasonConnectionLost, err)
			return false
		}
		select {
		case st.slots <- struct{}{}:
		case <-st.dead:
			return false
		}
	}
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return false
	}
	st.nextID++
	m.wireID = st.nextID
	m.deadline = time.Now().Add(st.n.cfg.AckTimeout)
	st.pending = append(st.pending, m)
	if !st.armed {
		st.armed = true
		st.timer.Reset(st.n.cfg.AckTimeout)
	}
	st.mu.Unlock()

	f := &pb.Data{Id: m.wireID, Channel: m.Channel, FromChannel: m.FromChannel, Payload: m.Data}
	err := writeFrame(st.bw, f)
	if err == nil && flush {
		err = st.bw.Flush()
	}
	if err != nil {
		st.fail(ReasonConnectionLost, err)
	}
	return true
}

// readAcks matches acks to pending frames until the stream ends.
func (st *outStream) readAcks() {
	defer st.n.wg.Done()
	br := bufio.NewReaderSize(st.s, 4<<10)
	var ack pb.Ack
	for {
		if err := readFrame(br, st.s, maxAckSize, st.n.cfg.ReadTimeout, &ack); err != nil {
			st.fail(ReasonConnectionLost, err)
			return
		}
		st.mu.Lock()
		if st.head == len(st.pending) || (ack.Id != 0 && ack.Id != st.pending[st.head].wireID) {
			st.mu.Unlock()
			st.n.charge(st.peer, remoteIP(st.s.Conn()), ratelimit.ProtocolViolation)
			st.fail(ReasonProtocolError, fmt.Errorf("unexpected ack %d", ack.Id))
			return
		}
		m := st.pending[st.head]
		st.pending[st.head] = nil
		st.head++
		if st.head == len(st.pending) {
			st.pending, st.head = st.pending[:0], 0
		}
		st.mu.Unlock()
		<-st.slots
		st.n.status(m.SendMsg, reasonFromWire(ack.Reason), nil)
		if ack.Id == 0 {
			// The peer could not read a frame and resets the stream.
			st.fail(ReasonConnectionLost, errors.New("peer reset the stream after an unreadable frame"))
			return
		}
	}
}

// checkTimeout runs when the oldest pending frame's ack may be overdue.
func (st *outStream) checkTimeout() {
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
		st.timer.Reset(wait)
		st.mu.Unlock()
		return
	}
	st.mu.Unlock()
	st.n.charge(st.peer, remoteIP(st.s.Conn()), ratelimit.UnansweredAck)
	st.fail(ReasonAckTimeout, fmt.Errorf("no ack within %s", st.n.cfg.AckTimeout))
}

// fail kills the stream once and gives every pending frame its Status.
func (st *outStream) fail(r Reason, err error) {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return
	}
	st.closed = true
	pending := st.pending[st.head:]
	st.pending = nil
	st.mu.Unlock()
	close(st.dead)
	st.timer.Stop()
	st.s.Reset()
	if st.n.ctx.Err() != nil {
		r = ReasonClosed
	}
	for _, m := range pending {
		st.n.status(m.SendMsg, r, err)
	}
}
