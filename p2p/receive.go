package p2p

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// ErrNotRouted is the Error event's error for a message the routing table
// refused.
var ErrNotRouted = errors.New("p2p: message not permitted by the routing table")

// handleStream serves one inbound message stream: read a frame, deliver it,
// ack it, in order, until the stream ends. Acks are written to a buffer and
// flushed only when no further frame is already buffered, so a pipelining
// sender gets its acks in batches.
func (n *Node) handleStream(s network.Stream) {
	p := s.Conn().RemotePeer()
	ip := remoteIP(s.Conn())
	if !n.streams.acquire(p, n.cfg.StreamsPerPeer) {
		n.charge(p, ip, ratelimit.ProtocolViolation)
		s.Reset()
		return
	}
	defer n.streams.release(p)

	br := bufio.NewReaderSize(s, streamBufSize)
	aw := &ackWriter{s: s, bw: bufio.NewWriterSize(s, 4<<10), timeout: n.cfg.WriteTimeout}
	maxFrame := n.cfg.MaxMessageSize + frameOverhead
	var (
		f      pb.Data
		ack    pb.Ack
		lastID uint64
	)
	for {
		err := readFrame(br, s, maxFrame, n.cfg.ReadTimeout, &f)
		if err != nil {
			n.readFailed(aw, p, ip, err)
			return
		}
		ack.Id, ack.Reason = f.Id, pb.Reason_OK
		switch {
		case f.Id <= lastID:
			// Ids must grow: a replayed or zero id is not a message.
			ack.Id, ack.Reason = 0, pb.Reason_MALFORMED
		case len(f.Payload) > n.cfg.MaxMessageSize:
			ack.Reason = pb.Reason_TOO_LARGE
		default:
			ack.Reason = n.deliver(p, ip, &f)
		}
		lastID = max(lastID, f.Id)
		n.metrics.frameReceived(reasonFromWire(ack.Reason), len(f.Payload))
		if err := writeFrame(aw.bw, &ack); err != nil {
			s.Reset()
			return
		}
		switch ack.Reason {
		case pb.Reason_MALFORMED:
			n.charge(p, ip, ratelimit.MalformedMessage)
		case pb.Reason_TOO_LARGE:
			n.charge(p, ip, ratelimit.OversizedMessage)
		case pb.Reason_NOT_ROUTED:
			n.charge(p, ip, ratelimit.Unauthorized)
		}
		if ack.Id == 0 {
			aw.flushAndClose()
			return
		}
		if br.Buffered() == 0 {
			if err := aw.flush(); err != nil {
				s.Reset()
				return
			}
		}
	}
}

// deliver hands a frame to the caller if the routing table permits it and
// the Receiver buffer has room.
func (n *Node) deliver(p peer.ID, ip netip.Addr, f *pb.Data) pb.Reason {
	if n.ctx.Err() != nil {
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
	if !n.cfg.Routes.Permits(p, f.FromChannel, f.Channel) {
		n.events.Push(Error{Peer: p, Err: fmt.Errorf("%w: from channel %d to channel %d", ErrNotRouted, f.FromChannel, f.Channel)}, false)
		return pb.Reason_NOT_ROUTED
	}
	if !n.events.Offer(Data{From: p, Channel: f.Channel, FromChannel: f.FromChannel, Bytes: f.Payload}) {
		n.prio.Push(Dropped{Peer: p, MsgID: f.Id, Count: 1}, false)
		return pb.Reason_BUSY
	}
	return pb.Reason_OK
}

// readFailed ends a stream whose next frame could not be read: a clean end,
// a frame over the size limit, a frame that is not protobuf, or a frame that
// did not arrive in time.
func (n *Node) readFailed(aw *ackWriter, p peer.ID, ip netip.Addr, err error) {
	s := aw.s
	switch {
	case errors.Is(err, io.EOF):
		s.Close()
	case frameTooLarge(err):
		// The body is not read: it may be as large as the prefix claims.
		n.charge(p, ip, ratelimit.OversizedMessage)
		writeFrame(aw.bw, &pb.Ack{Reason: pb.Reason_TOO_LARGE})
		aw.flushAndClose()
	case isTimeout(err):
		n.charge(p, ip, ratelimit.ProtocolViolation)
		s.Reset()
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, network.ErrReset) || n.ctx.Err() != nil:
		s.Reset()
	default:
		n.charge(p, ip, ratelimit.MalformedMessage)
		writeFrame(aw.bw, &pb.Ack{Reason: pb.Reason_MALFORMED})
		aw.flushAndClose()
	}
}

// ackWriter buffers a stream's acks and flushes them under a write
// deadline, so that a sender that stops reading its acks cannot block the
// stream's goroutine for longer than the write timeout.
type ackWriter struct {
	s        network.Stream
	bw       *bufio.Writer
	timeout  time.Duration
	deadline time.Time
}

func (w *ackWriter) flush() error {
	// Re-arming the deadline on every flush costs a timer each time; doing
	// it only when less than half of it is left still bounds every write to
	// between half and all of the timeout.
	if now := time.Now(); w.deadline.Sub(now) < w.timeout/2 {
		w.deadline = now.Add(w.timeout)
		if err := w.s.SetWriteDeadline(w.deadline); err != nil {
			return err
		}
	}
	return w.bw.Flush()
}

// flushAndClose sends the last ack and ends the stream after an unreadable
// frame. Close, not Reset: a reset would discard the ack on its way, and the
// sender would never learn why its stream ended. The peer's later bytes are
// not read.
func (w *ackWriter) flushAndClose() {
	s := w.s
	if w.flush() != nil {
		s.Reset()
		return
	}
	s.Close()
}

// isTimeout reports a read deadline: yamux returns its own timeout error,
// which has Timeout() but is not os.ErrDeadlineExceeded.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &t) && t.Timeout())
}

// streamCounter caps the inbound message streams each peer holds open.
type streamCounter struct {
	mu sync.Mutex
	n  map[peer.ID]int
}

func (c *streamCounter) acquire(p peer.ID, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[p] >= limit {
		return false
	}
	if c.n == nil {
		c.n = make(map[peer.ID]int)
	}
	c.n[p]++
	return true
}

func (c *streamCounter) release(p peer.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[p]--; c.n[p] <= 0 {
		delete(c.n, p)
	}
}
