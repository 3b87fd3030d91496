package p2p

import (
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ErrClosedAtHandshake is matched (errors.Is) by the error of a send whose
// connection the peer closed right after the Noise handshake: what a node
// whose gater refuses our key (not allowlisted, not from this IP, banned)
// does. The wire says nothing more, so it may also be another cause, such
// as the peer's connection limits, which a later attempt may pass: a send
// that meets it is reported ReasonDialFailed, which callers retry.
var ErrClosedAtHandshake = errors.New("the peer closed the connection during the handshake")

// ClosedAtHandshakeError is the error of a send whose connection, dialed
// by this node, the peer closed before it accepted anything on it: before a
// stream could be opened, or before it answered the proposal of ours
// (stream_open.go). It says what the operator can do about it, naming this
// node's ID.
type ClosedAtHandshakeError struct {
	Self peer.ID // this node
	Peer peer.ID
	Err  error // what opening the stream failed with
}

// Error is one line an operator can act on. It says "may": the peer's
// reason does not travel over the wire.
func (e *ClosedAtHandshakeError) Error() string {
	return fmt.Sprintf("%s: it may not allowlist %s (ask its operator to add it), or not from this IP",
		ErrClosedAtHandshake, e.Self)
}

// Is makes errors.Is(err, ErrClosedAtHandshake) true.
func (e *ClosedAtHandshakeError) Is(target error) bool { return target == ErrClosedAtHandshake }

// Unwrap returns the stream error.
func (e *ClosedAtHandshakeError) Unwrap() error { return e.Err }

// closedByPeer tells, after a connection to p has just been made and
// opening a stream on it failed, whether the peer closed it: the
// connection is gone, or the stream failed on a reset or an end of file.
// A refusal by the peer's gater looks exactly like this, since go-libp2p's
// dial returns once the handshake completes and the listener's gater
// decides after it.
func closedByPeer(n *Node, p peer.ID, err error) bool {
	return n.host.Network().Connectedness(p) != network.Connected ||
		errors.Is(err, network.ErrReset) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)
}
