package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	basichost "github.com/libp2p/go-libp2p/p2p/host/basic"
	msmux "github.com/multiformats/go-multistream"
)

// Dialing and opening a message stream. go-libp2p's Host.Connect and
// Host.NewStream both wait for identify to finish on the connection (a
// round trip, and the check of the peer's signed record), NewStream to
// learn whether the peer speaks the protocol before it proposes it with
// the stream's first bytes. Nothing here needs what identify tells, so
// the node dials the network directly (dial.go) and proposes at once: the
// first frame leaves with the proposal, as soon as the connection is up.
// Identify still runs, beside it. A peer that does not speak the protocol
// refuses it, and the stream's first read fails with errNotSpoken
// (readFailed).

// openStream opens a message stream on c, the connection just dialed, or
// with c nil on the best connection to p that is already up; it does not
// dial. The dialed connection, not another one the peer may have dialed
// meanwhile: the peer's end of it is up once the first frame is acked.
func (n *Node) openStream(ctx context.Context, p peer.ID, c network.Conn) (network.Stream, error) {
	var s network.Stream
	var err error
	if c != nil {
		s, err = c.NewStream(ctx)
	} else {
		s, err = n.host.Network().NewStream(network.WithNoDial(ctx, "connected already"), p)
	}
	if err != nil {
		return nil, fmt.Errorf("open a stream: %w", err)
	}
	if err := s.SetProtocol(ProtocolID); err != nil {
		s.Reset()
		return nil, fmt.Errorf("open a stream: %w", err)
	}
	return &proposedStream{Stream: s, rw: msmux.NewMSSelect(s, protocol.ID(ProtocolID)), written: make(chan struct{}),
		cs: n.conns.of(s.Conn()), writeHook: n.cfg.writeHook, readHook: n.cfg.readHook}, nil
}

// proposedStream is a stream whose protocol proposal leaves with its first
// write and whose answer is read by its first read.
type proposedStream struct {
	network.Stream
	rw io.ReadWriteCloser
	// answered: the peer accepted the proposal. Set by the reader; a
	// drain reads it too.
	answered atomic.Bool
	// cs is the connection's state: an answer is the peer accepting
	// the connection, and the stream's writer must know it as its reader
	// does (refusedAtHandshake). A peer that answered may have taken our
	// first frame: its connection closing after is a connection lost.
	cs *connState
	// written is closed by the first write, or by what ends or wakes the
	// stream's reader (Close, CloseWrite, Reset, SetReadDeadline: the
	// calls msgStream makes): the reader, which starts with the stream,
	// waits for it, since a read before any write would send the proposal
	// alone.
	written   chan struct{}
	writeOnce sync.Once
	// began: a write has begun, and with it the proposal (writeNoWait
	// leaves that one to a writer that may wait).
	began atomic.Bool

	writeHook func()          // Config.writeHook, tests only
	readHook  func(err error) // Config.readHook, tests only
}

// Read reads the answer to the proposal first: a read that fails before
// it is answered returns an unansweredError.
func (s *proposedStream) Read(b []byte) (int, error) {
	if !s.answered.Load() {
		<-s.written
		// A read of nothing reads the answer alone (go-multistream).
		if _, err := s.rw.Read(nil); err != nil {
			if s.readHook != nil {
				s.readHook(err)
			}
			return 0, &unansweredError{err}
		}
		s.cs.accepted.Store(true)
		s.answered.Store(true)
		if s.readHook != nil {
			s.readHook(nil)
		}
	}
	n, err := s.rw.Read(b)
	if err != nil && s.readHook != nil {
		s.readHook(err)
	}
	return n, err
}

func (s *proposedStream) Write(b []byte) (int, error) {
	if s.writeHook != nil {
		s.writeHook()
	}
	s.began.Store(true)
	n, err := s.rw.Write(b)
	s.wrote()
	return n, err
}

func (s *proposedStream) wrote() { s.writeOnce.Do(func() { close(s.written) }) }

// SetReadDeadline also releases a reader waiting for the first write: a
// drain wakes the reader with a deadline (drain.go).
func (s *proposedStream) SetReadDeadline(t time.Time) error {
	err := s.Stream.SetReadDeadline(t)
	s.wrote()
	return err
}

// Reset also releases a reader waiting for the first write.
func (s *proposedStream) Reset() error {
	err := s.Stream.Reset()
	s.wrote()
	return err
}

// Close reads the answer to the proposal if nothing has, as the protocol
// needs; the deadline bounds that wait.
func (s *proposedStream) Close() error {
	// The wait go-libp2p's host gives a stream's negotiation, which the
	// host would have made in NewStream.
	_ = s.Stream.SetReadDeadline(time.Now().Add(basichost.DefaultNegotiationTimeout))
	err := s.rw.Close()
	s.wrote()
	return err
}

// CloseWrite sends the proposal first if nothing was written.
func (s *proposedStream) CloseWrite() error {
	if f, ok := s.rw.(interface{ Flush() error }); ok {
		_ = f.Flush()
	}
	s.wrote()
	return s.Stream.CloseWrite()
}

// errNotSpoken reports a peer that refused the message protocol on a stream
// this node opened: it does not speak /bitvmx/msg/2.0.0 (another program on
// the peer's key and address, or a future version without this one). The
// refusal reads as multistream-select's "na", or, when the peer's
// go-libp2p took the frame after the proposal for a second proposal, as
// its reset of the stream with the code for a failed negotiation. Either
// comes before the proposal is answered (unanswered): a peer that accepted
// the stream, and so may have taken our frames, and then resets it with
// that code is a stream lost, not a message never delivered.
func errNotSpoken(err error) bool {
	var se *network.StreamError
	return unanswered(err) && (errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}) ||
		errors.As(err, &se) && se.Remote && se.ErrorCode == network.StreamProtocolNegotiationFailed)
}

// unansweredError is a stream's read that failed before the peer answered
// the proposal of the protocol: the peer never handed the stream to a
// protocol handler.
type unansweredError struct{ err error }

func (e *unansweredError) Error() string { return e.err.Error() }
func (e *unansweredError) Unwrap() error { return e.err }

// unanswered reports an error read before the proposal was answered.
func unanswered(err error) bool {
	var u *unansweredError
	return errors.As(err, &u)
}
