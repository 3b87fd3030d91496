package handler

import (
	"errors"
	"fmt"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// State is where an exchange stands in its finite state machine.
// docs/handler-fsm.md draws the machine and lists every transition.
type State string

// The states of an exchange. A dialer goes Queued -> (Resolving) -> Dialing
// or AwaitAck -> AwaitReply (requests only) -> Done; a responder goes
// Delivered -> Dialing or AwaitAck -> Done. Backoff sits between a refused
// send and its resend. Failed is the end of every error path.
const (
	// StateQueued: waiting for the peer to be free (another exchange with
	// it is active, or its connection is being closed).
	StateQueued State = "queued"
	// StateResolving: no address and no connection; asking the Resolver.
	StateResolving State = "resolving"
	// StateDialing: sent while not connected; the node dials, then sends.
	StateDialing State = "dialing"
	// StateAwaitAck: sent on a live connection; awaiting the peer's ack.
	StateAwaitAck State = "await_ack"
	// StateBackoff: the last send was refused or lost; waiting to resend.
	StateBackoff State = "backoff"
	// StateAwaitReply: the request was acknowledged; awaiting the reply.
	StateAwaitReply State = "await_reply"
	// StateDelivered: a received request is with the application, which
	// has yet to call Response.
	StateDelivered State = "delivered"
	// StateDone: the exchange completed.
	StateDone State = "done"
	// StateFailed: the exchange ended without completing; Outcome.Reason
	// says why.
	StateFailed State = "failed"
)

// Reason says why an exchange ended: ReasonOK, or one of the error paths of
// the FSM.
type Reason string

// The reasons an exchange ends.
const (
	ReasonOK Reason = "ok"
	// ReasonDialFailed: no connection could be made (refused, unreachable,
	// not allowlisted, no address known), after every attempt.
	ReasonDialFailed Reason = "dial_failed"
	// ReasonDisconnected: the connection was lost mid-exchange, after
	// every attempt.
	ReasonDisconnected Reason = "disconnected"
	// ReasonNotAcked: the peer's node acknowledged with a reason other
	// than ok (busy, too large, not routed...), after every attempt the
	// reason allows. Outcome.Err is an *AckError naming it.
	ReasonNotAcked Reason = "not_acked"
	// ReasonAckTimeout: the peer did not acknowledge in time. The peer
	// is judged faulty and disconnected.
	ReasonAckTimeout Reason = "ack_timeout"
	// ReasonReplyTimeout: for a dialer, no reply within
	// Config.ReplyTimeout of the request's ack; for a responder, the
	// application did not call Response within it.
	ReasonReplyTimeout Reason = "reply_timeout"
	// ReasonUnexpectedMessage: the peer broke the protocol. Its node
	// answered our message out of protocol (an ack with the wrong id: the
	// p2p Status protocol_error): the exchange fails, the p2p layer has
	// reset the stream and charged the peer, and the connection stays.
	// Or the peer's handler sent what no exchange allows (a reply to a
	// one-way message): the peer is judged faulty and disconnected,
	// and its active exchanges fail. (A payload that is not an envelope
	// never gets this far: our node refuses it malformed.)
	ReasonUnexpectedMessage Reason = "unexpected_message"
	// ReasonRateLimited: the peer was cut off by the rate limiter
	// (ConnectionLimit), or its node refuses us as rate limited.
	ReasonRateLimited Reason = "rate_limited"
	// ReasonClosed: the handler was closed before the exchange completed.
	// With a Config.Store a dialer's exchange is not ended by a close: it
	// stays in the store and resumes at the next start.
	ReasonClosed Reason = "closed"
	// ReasonUnknownExchange: the peer's handler does not know the exchange
	// our reply answers: it ended there already, or the request came from
	// a previous life of the peer's process (without a store), or from
	// another process sharing the peer's key.
	ReasonUnknownExchange Reason = "unknown_exchange"
	// ReasonPeerRemoved: the peer was taken off the allowlist (a reload)
	// while the exchange was queued or in progress. It ends at once: the
	// node disconnects the peer and refuses it from then on.
	ReasonPeerRemoved Reason = "peer_removed"
	// ReasonCancelled: the application ended the exchange (Cancel). It is
	// not kept in the dead letters. The peer may have received it.
	ReasonCancelled Reason = "cancelled"
	// ReasonUnanswered: the peer's handler received this request before
	// (from an earlier send, before a restart or a dead letter's retry) and
	// its application left it unanswered (it ended there, its reply
	// timeout passed): the peer will neither deliver it again nor answer
	// it. The exchange ends at once; to ask again, send a new Request.
	// Outcome.Err wraps ErrUnanswered and an *AckError (p2p unanswered).
	ReasonUnanswered Reason = "unanswered"
)

// Errors returned by the API, and wrapped by Outcome.Err and Error.Err.
var (
	// ErrClosed: the handler is closed or closing.
	ErrClosed = errors.New("handler: closed")
	// ErrUnknownExchange: Response names no request awaiting an answer
	// from that peer (never received, already failed, or timed out).
	ErrUnknownExchange = errors.New("handler: unknown exchange")
	// ErrAlreadyResponded: Response was already called for the exchange.
	ErrAlreadyResponded = errors.New("handler: exchange already responded to")
	// ErrTooLarge: the message does not fit in one p2p message once
	// wrapped in its envelope.
	ErrTooLarge = errors.New("handler: message too large")
	// ErrSelf: the peer is the handler's own identity.
	ErrSelf = errors.New("handler: cannot exchange with self")
	// ErrNoPeer: the peer ID is empty.
	ErrNoPeer = errors.New("handler: no peer")
	// ErrUnexpectedMessage: a peer sent something the exchange protocol
	// does not allow at that point.
	ErrUnexpectedMessage = errors.New("handler: unexpected message")
	// ErrReplyTimeout: see ReasonReplyTimeout.
	ErrReplyTimeout = errors.New("handler: reply timeout")
	// ErrDisconnected: see ReasonDisconnected.
	ErrDisconnected = errors.New("handler: disconnected mid-exchange")
	// ErrRateLimited: see ReasonRateLimited.
	ErrRateLimited = errors.New("handler: peer cut off by the rate limiter")
	// ErrPeerRemoved: see ReasonPeerRemoved.
	ErrPeerRemoved = errors.New("handler: peer removed from the allowlist")
	// ErrCancelled: see ReasonCancelled.
	ErrCancelled = errors.New("handler: exchange cancelled")
	// ErrUnanswered: see ReasonUnanswered.
	ErrUnanswered = errors.New("handler: the peer's application left this exchange unanswered and will not get it again: send it anew as a new request")
	// ErrNoStore: the call needs a Config.Store and the handler has none.
	ErrNoStore = errors.New("handler: no store")
	// ErrNotDurable: the Config.Store failed to record something: the call
	// that needed it did not happen (Request, Send, Response, Ack).
	ErrNotDurable = errors.New("handler: not recorded in the store")
)

// AckError is the Outcome.Err of an exchange whose last send was refused or
// lost: Reason is what the p2p layer reported (the peer's ack, or a local
// decision such as dial_failed), Err its detail when there is one.
type AckError struct {
	Reason p2p.Reason
	Err    error
}

// Error says what the p2p layer reported.
func (e *AckError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("handler: send failed: %s: %v", e.Reason, e.Err)
	}
	return fmt.Sprintf("handler: send failed: %s", e.Reason)
}

// Unwrap returns the detail, if any.
func (e *AckError) Unwrap() error { return e.Err }

// ackPolicy is what the FSM does with a Status that is not OK.
type ackPolicy uint8

const (
	// retry: resend after a backoff, while attempts remain.
	retry ackPolicy = iota
	// give up at once: resending would get the same answer.
	terminal
	// the peer misbehaved: give up and disconnect it.
	fault
)

// classify maps a p2p Status reason to the handler's Reason and policy.
func classify(r p2p.Reason) (Reason, ackPolicy) {
	switch r {
	case p2p.ReasonBusy, p2p.ReasonQueueFull:
		// The peer's application (or our own queue to it) is behind: the
		// one refusal that resending is made for.
		return ReasonNotAcked, retry
	case p2p.ReasonConnectionLost:
		return ReasonDisconnected, retry
	case p2p.ReasonDialFailed, p2p.ReasonNotConnected:
		return ReasonDialFailed, retry
	case p2p.ReasonRejected:
		// Not on our allowlist, or the peer's gater refused us.
		return ReasonDialFailed, terminal
	case p2p.ReasonRateLimited:
		return ReasonRateLimited, terminal
	case p2p.ReasonAckTimeout:
		return ReasonAckTimeout, fault
	case p2p.ReasonProtocolError:
		// The peer's node answered out of protocol (docs/PROTOCOL.md
		// §4.4): the stream is reset and the peer charged, the connection
		// stays (as the spec has it); this exchange's fate is unknown and
		// a resend would meet the same peer.
		return ReasonUnexpectedMessage, terminal
	case p2p.ReasonTooManyInFlight:
		// Our node kept its in-flight limit, the peer's is lower: resend
		// once acks have come back.
		return ReasonNotAcked, retry
	case p2p.ReasonRefused:
		// A reason of a newer peer's that we do not know: a refusal,
		// nothing more (docs/PROTOCOL.md §9). Not retried: we cannot know
		// that a resend helps.
		return ReasonNotAcked, terminal
	case p2p.ReasonClosed:
		return ReasonClosed, terminal
	case p2p.ReasonShuttingDown:
		// The peer is restarting, most likely: it will be back.
		return ReasonNotAcked, retry
	case p2p.ReasonUnknownExchange:
		return ReasonUnknownExchange, terminal
	case p2p.ReasonUnanswered:
		// The peer's application ended this request unanswered: a resend
		// is neither delivered nor answered (effectively once).
		return ReasonUnanswered, terminal
	default:
		// too_large, malformed, not_routed: the same message would be
		// refused again.
		return ReasonNotAcked, terminal
	}
}
