package p2p

import "github.com/bitvmx/go-bitvmx-p2p/p2p/pb"

// Reason says why a sent message was not acknowledged OK. The first group
// comes from the receiving peer's ack; the second is decided locally.
type Reason string

// Reasons carried by a peer's ack.
const (
	ReasonOK           Reason = "ok"
	ReasonTooLarge     Reason = "too_large"
	ReasonMalformed    Reason = "malformed"
	ReasonRateLimited  Reason = "rate_limited"
	ReasonBusy         Reason = "busy"
	ReasonNotRouted    Reason = "not_routed"
	ReasonShuttingDown Reason = "shutting_down"
	// ReasonUnknownExchange: the peer's application does not know what the
	// message answers (Config.Accept decided so); see pb.Reason.
	ReasonUnknownExchange Reason = "unknown_exchange"
	// ReasonTooManyInFlight: the message arrived while the peer already
	// had its Config.MaxInFlight of our messages unanswered on the stream
	// (docs/PROTOCOL.md §4.6). Not delivered; it may be sent again.
	ReasonTooManyInFlight Reason = "too_many_in_flight"
	// ReasonUnanswered: the message is a request the peer's application
	// received before and ended without answering; the peer will neither
	// deliver it again nor answer it (docs/PROTOCOL.md §4.4). It must be
	// sent anew, as a new request. Config.Accept may give it as a verdict.
	ReasonUnanswered Reason = "unanswered"
	// ReasonRefused: an ack reason this node does not know, from a newer
	// peer. The message was not delivered; nothing else is implied: it is
	// neither an error nor misbehaviour (docs/PROTOCOL.md §9).
	ReasonRefused Reason = "refused"
)

// Reasons decided by the sending node.
const (
	// ReasonNotConnected: no connection and no address to dial.
	ReasonNotConnected Reason = "not_connected"
	// ReasonDialFailed: the dial or the stream opening failed.
	ReasonDialFailed Reason = "dial_failed"
	// ReasonRejected: the peer is not on the local allowlist, or refused us
	// (its ack said not allowlisted), or this node's rate limiter has cut
	// it off (the error matches ErrPeerCutOff).
	ReasonRejected Reason = "rejected"
	// ReasonAckTimeout: no ack within Config.AckTimeout.
	ReasonAckTimeout Reason = "ack_timeout"
	// ReasonConnectionLost: the stream broke before the ack arrived; the
	// message may or may not have been delivered.
	ReasonConnectionLost Reason = "connection_lost"
	// ReasonQueueFull: more than Config.SendQueue messages wait for the peer.
	ReasonQueueFull Reason = "queue_full"
	// ReasonClosed: the node was closed before the message was acked.
	ReasonClosed Reason = "closed"
	// ReasonProtocolError: the peer answered out of protocol.
	ReasonProtocolError Reason = "protocol_error"
)

func reasonFromWire(r pb.Reason) Reason {
	switch r {
	case pb.Reason_OK:
		return ReasonOK
	case pb.Reason_TOO_LARGE:
		return ReasonTooLarge
	case pb.Reason_MALFORMED:
		return ReasonMalformed
	case pb.Reason_RATE_LIMITED:
		return ReasonRateLimited
	case pb.Reason_BUSY:
		return ReasonBusy
	case pb.Reason_NOT_ROUTED:
		return ReasonNotRouted
	case pb.Reason_SHUTTING_DOWN:
		return ReasonShuttingDown
	case pb.Reason_NOT_ALLOWLISTED:
		return ReasonRejected
	case pb.Reason_UNKNOWN_EXCHANGE:
		return ReasonUnknownExchange
	case pb.Reason_TOO_MANY_IN_FLIGHT:
		return ReasonTooManyInFlight
	case pb.Reason_UNANSWERED:
		return ReasonUnanswered
	default:
		// A newer peer's reason we do not know is a refusal, and only
		// that: reporting or punishing it would cut off every peer of a
		// later version that adds a reason.
		return ReasonRefused
	}
}

// reasonToWire is the ack of a verdict of Config.Accept. A reason that an
// ack cannot carry refuses the message as busy: the sender tries again
// later, and nothing is acknowledged that was not taken.
func reasonToWire(r Reason) pb.Reason {
	switch r {
	case ReasonOK:
		return pb.Reason_OK
	case ReasonMalformed:
		return pb.Reason_MALFORMED
	case ReasonShuttingDown:
		return pb.Reason_SHUTTING_DOWN
	case ReasonUnknownExchange:
		return pb.Reason_UNKNOWN_EXCHANGE
	case ReasonTooLarge:
		return pb.Reason_TOO_LARGE
	case ReasonUnanswered:
		return pb.Reason_UNANSWERED
	default:
		return pb.Reason_BUSY
	}
}
