package p2p

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// ErrClosedAtHandshake is matched (errors.Is) by the error of a send whose
// connection the peer closed right after the Noise handshake, what a node
// whose gater refuses our key (not allowlisted, not from this IP, banned)
// does, or right before it, what its gater does to an IP that no entry
// admits or that it bans (ClosedAtHandshakeError.Before). The wire says
// nothing more, so it may also be another cause, such as the peer's
// connection limits, which a later attempt may pass: a send that meets it
// is reported ReasonDialFailed, which callers retry.
var ErrClosedAtHandshake = errors.New("the peer closed the connection during the handshake")

// ClosedAtHandshakeError is the error of a send whose connection, dialed
// by this node, the peer closed before it accepted anything on it: before a
// stream could be opened, or before it answered the proposal of ours
// (stream_open.go), or, Before, before the handshake itself. It says what
// the operator can do about it, naming this node's ID.
type ClosedAtHandshakeError struct {
	Self peer.ID // this node
	Peer peer.ID
	Err  error // what opening the stream, or the dial, failed with
	// Before: the peer closed the connection before the handshake, having
	// seen only our IP (the dial failed negotiating the security protocol).
	Before bool
}

// slowHandshakeHint ends both of Error's lines: on a loaded machine the
// peer's handshake timeout, not its gater, cut nearly every handshake it
// closed (ten nodes with CPU spinners: 717 of 735).
const slowHandshakeHint = "or, if either machine is loaded, the handshake outlasted the peer's handshake timeout (Config.HandshakeTimeout, 15s by default)"

// Error is one line an operator can act on. It says "may": the peer's
// reason does not travel over the wire.
func (e *ClosedAtHandshakeError) Error() string {
	if e.Before {
		return fmt.Sprintf("the peer closed the connection before the handshake (%v): it may not admit this node's IP "+
			"(no entry of its allowlist admits it, e.g. one binding %s to other IPs; or it bans this IP for a while, "+
			"or is at its connection limits for it), or what listens there is not the peer's node; %s", e.Err, e.Self, slowHandshakeHint)
	}
	return fmt.Sprintf("%s: it may not allowlist %s (ask its operator to add it), or not from this IP; %s",
		ErrClosedAtHandshake, e.Self, slowHandshakeHint)
}

// closedBeforeHandshake reports whether err, a dial's, says the peer
// closed the connection while the security protocol was being negotiated,
// before any handshake, as a gater refusing the IP does: some address's
// error is that, closed (EOF) or reset. go-libp2p gives that failure no
// type of its own, only its text. It returns that address's error.
func closedBeforeHandshake(err error) (error, bool) {
	var de *swarm.DialError
	if !errors.As(err, &de) {
		return nil, false
	}
	for _, te := range de.DialErrors {
		closed := errors.Is(te.Cause, io.EOF) || errors.Is(te.Cause, io.ErrUnexpectedEOF) || errors.Is(te.Cause, syscall.ECONNRESET)
		if closed && strings.Contains(te.Cause.Error(), "failed to negotiate security protocol") {
			return &te, true
		}
	}
	return nil, false
}

// ErrWrongAddress is matched (errors.Is) by the error of a dial of a peer
// that had no address left to try because the one this node had proved
// to hold another peer's key lately (wrongaddr.go): it is not dialed for
// that peer for a while, and the peer is reachable again once it is known
// at another address (a DHT record, identify, an explicit address).
var ErrWrongAddress = errors.New("an address this node has for the peer proved to hold another peer's key lately")

// DialError returns err, the error of a dial of p that another user of the
// node's host made (the DHT's, through go-libp2p's Connect or NewStream),
// as the node's own dials report it: a refusal before the handshake as a
// *ClosedAtHandshakeError with Before; no address left to dial, when one
// of p's proved to hold another key lately, wrapping ErrWrongAddress
// too; a relay's refusal of a circuit to p, now or lately, wrapping
// ErrRelayRefusedDestination (relay_refused.go: it is remembered here);
// anything else as it is. A dial cut short by its context is not a
// refusal: the caller rules that out first.
func (n *Node) DialError(p peer.ID, err error) error {
	if te, ok := closedBeforeHandshake(err); ok {
		return &ClosedAtHandshakeError{Self: n.ID(), Peer: p, Err: te, Before: true}
	}
	if errors.Is(err, swarm.ErrNoGoodAddresses) && n.wrong.anyFor(p) {
		// Bare, "no good addresses" would leave the operator guessing why.
		return fmt.Errorf("%w: %w and is not dialed for it for %v", err, ErrWrongAddress, n.wrong.ttl)
	}
	return relayDenied(n.denied, p, err, n.log)
}

// Is makes errors.Is(err, ErrClosedAtHandshake) true.
func (e *ClosedAtHandshakeError) Is(target error) bool { return target == ErrClosedAtHandshake }

// Unwrap returns the stream's error, or with Before the dial's.
func (e *ClosedAtHandshakeError) Unwrap() error { return e.Err }

// refusedAtHandshake reports whether c, a connection that failed a send
// of ours (opening a stream on it, or a read or write of the stream's
// first frames), reads as the peer's refusal at the handshake rather than
// a connection lost: this node dialed it, it is closed, the peer never
// accepted anything on it (cs: it opened no message stream on it and
// answered no proposal of ours; dialPeer never hands out a connection
// closed before its dial began, dial.go), and this node did not close it
// itself: neither that connection (cs.closedHere) nor all of them (Close,
// which marks the node closing before its host closes them: a stream
// opened after Close listed the streams it drains meets its connection
// closed by the host, and the peer refused nothing).
//
// That is all a refusal shows: go-libp2p's dial returns once the Noise
// handshake completes, and the listener's gater decides after it and
// closes the connection without a word. Nothing of ours on such a
// connection can have been delivered: the peer's protocol handler never
// took a stream. A connection the peer accepted may have carried our
// messages before it closed, and one this node closed was not refused by
// the peer: both are connections lost, which the caller reports as such.
//
// Which goroutine meets the closed connection first (the sender opening
// the stream, the stream's writer or its reader) is up to the scheduler,
// so each of them asks this, and all report the same.
func (n *Node) refusedAtHandshake(c network.Conn, cs *connState) bool {
	return c.IsClosed() && c.Stat().Direction == network.DirOutbound &&
		!cs.accepted.Load() && !cs.closedHere.Load() && !n.closing.Load()
}
