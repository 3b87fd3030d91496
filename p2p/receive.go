package p2p

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"

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
	bw := bufio.NewWriterSize(s, 4<<10)
	maxFrame := n.cfg.MaxMessageSize + frameOverhead
	var (
		f      pb.Data
		ack    pb.Ack
		lastID uint64
	)
	for {
		err := readFrame(br, s, maxFrame, n.cfg.ReadTimeout, &f)
		if err != nil {
			n.readFailed(s, bw, p, ip, err)
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
			ack.Reason = n.deliver(p, &f)
		}
		lastID = max(lastID, f.Id)
		if err := writeFrame(bw, &ack); err != nil {
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
			n.flushAndClose(s, bw)
			return
		}
		if br.Buffered() == 0 {
			if err := n.flush(s, bw); err != nil {
				s.Reset()
				return
			}
		}
	}
}

// deliver hands a frame to the caller if the routing table permits it and
// the Receiver buffer has room.
func (n *Node) deliver(p peer.ID, f *pb.Data) pb.Reason {
	if n.ctx.Err() != nil {
		return pb.Reason_SHUTTING_DOWN
	}
	if n.limiter.PeerBanned(string(p)) {
		return pb.Reason_RATE_LIMITED
	}
	if !n.cfg.Routes.Permits(p, f.FromChannel, f.Channel) {
		n.events.push(Error{Peer: p, Err: fmt.Errorf("%w: from channel %d to channel %d", ErrNotRouted, f.FromChannel, f.Channel)}, false)
		return pb.Reason_NOT_ROUTED
	}
	if !n.events.offer(Data{From: p, Channel: f.Channel, FromChannel: f.FromChannel, Bytes: f.Payload}) {
		n.prio.push(Dropped{Peer: p, MsgID: f.Id, Count: 1}, false)
		return pb.Reason_BUSY
	}
	return pb.Reason_OK
}

// readFailed ends a stream whose next frame could not be read: a clean end,
// a frame over the size limit, a frame that is not protobuf, or a frame that
// did not arrive in time.
func (n *Node) readFailed(s network.Stream, bw *bufio.Writer, p peer.ID, ip netip.Addr, err error) {
	switch {
	case errors.Is(err, io.EOF):
		s.Close()
	case frameTooLarge(err):
		// The body is not read: it may be as large as the prefix claims.
		n.charge(p, ip, ratelimit.OversizedMessage)
		writeFrame(bw, &pb.Ack{Reason: pb.Reason_TOO_LARGE})
		n.flushAndClose(s, bw)
	case errors.Is(err, os.ErrDeadlineExceeded):
		n.charge(p, ip, ratelimit.ProtocolViolation)
		s.Reset()
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, network.ErrReset) || n.ctx.Err() != nil:
		s.Reset()
	default:
		n.charge(p, ip, ratelimit.MalformedMessage)
		writeFrame(bw, &pb.Ack{Reason: pb.Reason_MALFORMED})
		n.flushAndClose(s, bw)
	}
}

func (n *Node) flush(s network.Stream, bw *bufio.Writer) error {
	if err := s.SetWriteDeadline(deadline(n.cfg.WriteTimeout)); err != nil {
		return err
	}
	return bw.Flush()
}

// flushAndClose sends the last ack and ends the stream after an unreadable
// frame. Close, not Reset: a reset would discard the ack on its way, and the
// sender would never learn why its stream ended. The peer's later bytes are
// not read.
func (n *Node) flushAndClose(s network.Stream, bw *bufio.Writer) {
	if n.flush(s, bw) != nil {
		s.Reset()
		return
	}
	s.Close()
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
