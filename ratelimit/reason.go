package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
)

// Reason says why a token was spent. Its String form is a stable snake_case
// name: logs, JSON events and Prometheus labels all use it, so a name never
// changes once released (new reasons are only ever appended).
type Reason uint8

// The reasons a token is spent. The zero Reason is deliberately not one of
// them, so that a forgotten field shows up as "Reason(0)" rather than as a
// plausible cause.
const (
	// FailedHandshake means an inbound Noise handshake failed. It is
	// charged to the source IP, because until the handshake succeeds
	// there is no proven key to charge.
	FailedHandshake Reason = iota + 1

	// PeerIPMismatch means an allowlisted key connected from an IP that
	// its allowlist entry does not allow, which looks like a stolen or
	// misconfigured identity.
	PeerIPMismatch

	// UnknownPeer means the key is not on the allowlist. Keys are free
	// to mint, so this is best charged to the source IP.
	UnknownPeer

	// MalformedMessage means a frame did not decode.
	MalformedMessage

	// OversizedMessage means a frame was larger than the configured
	// maximum.
	OversizedMessage

	// UnansweredAck means the ack for a sent message did not come back
	// in time.
	UnansweredAck

	// ProtocolViolation means any other abuse of the wire protocol, such
	// as an unknown protocol ID, too many streams, too many frames in
	// flight, or acks out of order.
	ProtocolViolation

	// Unauthorized means a message came that the routing table does not
	// permit from that peer to that channel.
	Unauthorized

	// DeclinedHandshake means an inbound Noise handshake ended with the
	// initiator hanging up right after it received the node's key (Noise
	// message 2), before sending the last message. That is what an honest
	// dialer does when it reached this node at an address it holds for
	// another peer: the key proves to be the wrong one and it aborts. It
	// is charged to the source IP, like FailedHandshake, because it still
	// costs the node a signature and Diffie-Hellman work; but a wrong
	// address is an honest mistake that a third party can provoke (by
	// advertising this node's address as its own), so it costs only a
	// DeclinedShare of a token. A flood of declines is still cut off; and
	// since a stranger can fake a decline at no cost of its own, the p2p
	// node charges only a few per source IP and window so, and the rest
	// as FailedHandshake.
	DeclinedHandshake

	// numReasons sizes per-reason arrays; index 0 is the out-of-range slot.
	numReasons = int(DeclinedHandshake) + 1
)

// lastReason is the highest declared Reason.
const lastReason = DeclinedHandshake

// DeclinedShare is how many DeclinedHandshake spends make one token: a key
// absorbs DeclinedShare*Burst declines in quick succession, and
// DeclinedShare per Refill sustained, where every other reason absorbs
// Burst and one per Refill.
const DeclinedShare = 4

// cost is the share of one token's refill time that a spend for r takes.
func (r Reason) cost(refill int64) int64 {
	if r == DeclinedHandshake {
		return max(1, refill/DeclinedShare)
	}
	return refill
}

// reasonNames is indexed by Reason. It is a constant table: never written
// after initialisation.
var reasonNames = [numReasons]string{
	FailedHandshake:   "failed_handshake",
	PeerIPMismatch:    "peer_ip_mismatch",
	UnknownPeer:       "unknown_peer",
	MalformedMessage:  "malformed_message",
	OversizedMessage:  "oversized_message",
	UnansweredAck:     "unanswered_ack",
	ProtocolViolation: "protocol_violation",
	Unauthorized:      "unauthorized",
	DeclinedHandshake: "declined_handshake",
}

// ErrUnknownReason is wrapped by the error ParseReason and
// Reason.UnmarshalText return for a name that is not a Reason.
var ErrUnknownReason = errors.New("ratelimit: unknown reason")

// valid reports whether r is one of the declared reasons.
func (r Reason) valid() bool { return r >= FailedHandshake && r <= lastReason }

// String returns the stable snake_case name of r, for example
// "failed_handshake". An undeclared value prints as "Reason(N)", which
// ParseReason rejects, so a bug cannot masquerade as a real cause.
func (r Reason) String() string {
	if r.valid() {
		return reasonNames[r]
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// MarshalText implements encoding.TextMarshaler so that Reason appears in
// JSON events under its name rather than as a number.
func (r Reason) MarshalText() ([]byte, error) {
	if !r.valid() {
		return nil, fmt.Errorf("ratelimit: marshal %s: %w", r, ErrUnknownReason)
	}
	return []byte(reasonNames[r]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; it accepts exactly the
// names String returns for declared reasons.
func (r *Reason) UnmarshalText(text []byte) error {
	v, err := ParseReason(string(text))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Reasons returns every declared Reason in ascending order, for example to
// pre-register one Prometheus series per reason. The slice is new on each
// call, so the caller may keep or modify it.
func Reasons() []Reason {
	rs := make([]Reason, 0, numReasons-1)
	for r := FailedHandshake; r <= lastReason; r++ {
		rs = append(rs, r)
	}
	return rs
}

// ParseReason returns the Reason whose String is s. Matching is exact (case
// sensitive), since the names are identifiers rather than prose. The error
// wraps ErrUnknownReason.
func ParseReason(s string) (Reason, error) {
	for r := FailedHandshake; r <= lastReason; r++ {
		if reasonNames[r] == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownReason, s)
}

// ReasonCounts holds one counter per Reason and is indexed by it, as in
// counts[ratelimit.MalformedMessage]. Index 0 counts spends made with an
// undeclared Reason: those are still charged (the behaviour was bad whatever
// the label), and a non-zero slot 0 points at a caller bug.
type ReasonCounts [numReasons]uint64

// Total returns the sum over all reasons, slot 0 included.
func (c ReasonCounts) Total() uint64 {
	var n uint64
	for _, v := range c {
		n += v
	}
	return n
}
