package handler

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// ExchangeID names one exchange. The dialer draws it at random when Request
// or Send is called; the responder's Request event carries it, Response
// echoes it, and every Outcome names it.
type ExchangeID uint64

// String formats the ID as 16 hex digits, the form logs and JSON use.
func (id ExchangeID) String() string { return fmt.Sprintf("%016x", uint64(id)) }

// MarshalText encodes the ID as String does, so that JSON carries it as a
// string: a 64-bit number does not survive JavaScript's float64.
func (id ExchangeID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses what MarshalText produced.
func (id *ExchangeID) UnmarshalText(b []byte) error {
	v, err := ParseExchangeID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseExchangeID parses an ID in the form String produces (hex, up to 16
// digits).
func ParseExchangeID(s string) (ExchangeID, error) {
	v, err := strconv.ParseUint(s, 16, 64)
	// Not more than 16 digits, as said: ParseUint takes leading zeros
	// without end, and "000...0ab" is no ID's text.
	if err != nil || v == 0 || len(s) > 16 {
		return 0, fmt.Errorf("handler: bad exchange ID %q", s)
	}
	return ExchangeID(v), nil
}

// Role says which side of an exchange the handler played.
type Role uint8

// The two roles.
const (
	// Dialer started the exchange with Request or Send.
	Dialer Role = iota + 1
	// Responder received a request and answered it with Response.
	Responder
)

// MarshalText encodes the role by name, for JSON.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// String names the role: "dialer" or "responder".
func (r Role) String() string {
	switch r {
	case Dialer:
		return "dialer"
	case Responder:
		return "responder"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// Kind says what an exchange carries.
type Kind uint8

// The two kinds of exchange.
const (
	// KindRequest is a request answered by a reply (Request, Response).
	KindRequest Kind = iota + 1
	// KindMessage is a one-way acknowledged message (Send).
	KindMessage
)

// MarshalText encodes the kind by name, for JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// String names the kind: "request" or "message".
func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindMessage:
		return "message"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Event is what the handler delivers to the application on its three
// channels, always as a pointer:
//
//   - Events: *Request, *Reply, *Message (data from peers).
//   - Outcomes: *Outcome (one per exchange) and *Error.
//   - Priority: *Dropped and *ConnectionLimit.
//
// An event handed out is the application's: the handler keeps no reference
// to it and never reads or changes it again. Pointers rather than values,
// so that an event is not copied into a heap allocation of its own: the
// events of an exchange live in its state, which is allocated anyway.
type Event interface{ handlerEvent() }

// Request is a peer's request. Answer it with Handler.Response(From,
// Exchange, ...) within Config.ReplyTimeout. A request the peer resent is
// delivered once.
type Request struct {
	From     peer.ID
	Exchange ExchangeID
	Data     []byte
	// Redelivered marks a request delivered again after a restart: it was
	// received (and stored) by the handler's previous process, whose
	// application never answered it. With a Config.Store this is the one
	// repeat an application can see (docs/durability.md).
	Redelivered bool
	// Deadline is when the handler stops waiting for the answer:
	// Config.ReplyTimeout after it took the request (for one Redelivered,
	// after the start that delivered it again). A Response before it is
	// in time; from it on the request may end reply_timeout, and a
	// Response then fails with ErrUnknownExchange.
	Deadline time.Time
}

// Reply is the answer to one of the handler's own requests. It is delivered
// before that exchange's Outcome is emitted, on Events where the Outcome
// goes on Outcomes: a reader of both may take the Outcome first, and Close
// may drop a Reply still queued behind a full Events channel (see the
// package documentation, "Six channels"). The OK Outcome carries it too
// (Outcome.Reply).
type Reply struct {
	From     peer.ID
	Exchange ExchangeID
	Data     []byte
	// Tag is the request's WithTag label.
	Tag string
	// Redelivered marks a reply handed out again after a restart: the
	// previous process's application never acknowledged its exchange's
	// Outcome (Config.AckOutcomes).
	Redelivered bool
}

// Message is a peer's one-way message (the peer called Send). A message the
// peer resent is delivered once. With a Config.Store, the application
// acknowledges it with Handler.Ack once handled (or Config.AutoAck does).
type Message struct {
	From     peer.ID
	Exchange ExchangeID
	Data     []byte
	// Redelivered marks a message delivered again after a restart: the
	// previous process stored it and its application never acknowledged
	// it.
	Redelivered bool
}

// Outcome reports how an exchange ended: exactly one per exchange the
// handler dialed (Request, Send) and one per request it responded to or
// failed to respond to (none for a request answered just before a crash:
// docs/handler-fsm.md). Messages received carry no Outcome. With a
// Config.Store, a request answered before is answered again from the store
// when its dialer sends it again (it lost the reply, or restarted); that
// replay gives no second Outcome. So a responder's Outcome tells how its
// reply fared in the exchange that answered: a failure (the dialer was
// down: ReasonDialFailed) does not mean the dialer never gets the reply,
// which the dialer's own Outcome tells. A dialer's
// outcomes are always delivered; a responder's are dropped rather than
// queued without bound when more than 1024 wait behind a full Outcomes
// channel, so that an application answering requests need not read them.
type Outcome struct {
	Peer     peer.ID
	Exchange ExchangeID
	Role     Role
	Kind     Kind
	// OK is true when the exchange completed: for a dialed request, the
	// reply arrived; for a message, the peer acknowledged it; for a
	// response, the peer acknowledged the reply.
	OK bool
	// State is StateDone or StateFailed.
	State State
	// Stage is the state the exchange was in when it ended, for example
	// StateAwaitReply for a reply timeout.
	Stage State
	// Reason is ReasonOK or why the exchange failed.
	Reason Reason
	// Err carries detail on a failure. It wraps one of the package's
	// sentinel errors, or is an *AckError for a refused message.
	Err error
	// Reply is the reply of a dialed request that got one (OK): the
	// Reply event handed out before this Outcome on Events, the same
	// pointer. The Outcome carries it so that an OK Outcome always comes
	// with its reply: a reader of both channels may take the Outcome
	// first, and Close hands each channel only what still fits in it,
	// dropping Replies still queued behind events the application had not
	// read (and, with a store, the exchange is over on disk: no later
	// start hands them out again). Nil for every other Outcome. Events
	// must be read all the same: Replies waiting there count against
	// Config.MaxBacklog.
	Reply *Reply
	// Attempts is how many times the last message of the exchange (the
	// request, the message or the reply) was sent. A resumed exchange
	// counts the sends of its previous lives (with a Config.Store, the
	// first send is counted when Request or Send stores the exchange); a
	// retried dead letter counts from 0 again. A dialed request whose
	// reply came counts at least one.
	Attempts int
	// Duration runs from Request or Send (or from receiving the request,
	// for a responder) to the outcome, across restarts and dead-letter
	// retries (the original Request's time is kept). Across restarts it is
	// measured by the wall clock, so a clock step between two lives is in
	// it; a clock set back by more than the exchange took makes it 0.
	Duration time.Duration
	// Tag is the WithTag label of the Request or Send, kept across
	// restarts with a Config.Store.
	Tag string
	// Resumed marks a dialer's exchange that a previous process started:
	// the handler took it from its Config.Store at start.
	Resumed bool
	// DeadLettered says the failed exchange was kept in the store's dead
	// letters, where an operator can retry or drop it.
	DeadLettered bool
	// Redelivered marks an Outcome handed out again after a restart,
	// because the application had not acknowledged it with AckOutcome
	// (Config.AckOutcomes). It is the same end as before, not a new one.
	Redelivered bool
}

// Error reports a problem not tied to one of the handler's exchanges: a
// peer that broke the exchange protocol, or an error from the p2p node (a
// message its routing table refused, an allowlist that failed to reload).
type Error struct {
	Peer peer.ID
	Err  error
	// Disconnected says the handler judged Peer faulty and disconnected it.
	Disconnected bool
	// Repeats counts the further Errors about Peer (none of them a
	// disconnection) folded into this one while they waited for an
	// application not reading Outcomes; Err is the first one's. Folding
	// keeps one peer's stream of errors from crowding the alerts about
	// others out of the queue, whose length is bounded.
	Repeats int
}

// Dropped is passed through from the p2p node's Priority channel: Count
// messages from Peer found the node's Receiver buffer full and were answered
// "busy" (their senders resend them). It happens when the application falls
// behind far enough that the handler stops taking data from the node.
type Dropped struct {
	Peer  peer.ID
	Count uint64
}

// ConnectionLimit reports a peer or an IP whose misbehaviour budget ran out:
// it was disconnected and is refused until Until. The handler's exchanges
// with a cut-off peer fail with ReasonRateLimited.
type ConnectionLimit struct {
	Peer   peer.ID    // empty when the limit is on an IP
	IP     netip.Addr // invalid when the limit is on a peer
	Reason ratelimit.Reason
	Until  time.Time
}

func (*Request) handlerEvent()         {}
func (*Reply) handlerEvent()           {}
func (*Message) handlerEvent()         {}
func (*Outcome) handlerEvent()         {}
func (*Error) handlerEvent()           {}
func (*Dropped) handlerEvent()         {}
func (*ConnectionLimit) handlerEvent() {}

// mergeDropped folds consecutive Dropped events of one peer into one, so that
// a flood of drops cannot grow the Priority queue.
func mergeDropped(last *Event, ev Event) bool {
	d, ok := ev.(*Dropped)
	if !ok {
		return false
	}
	l, ok := (*last).(*Dropped)
	if !ok || l.Peer != d.Peer {
		return false
	}
	// The tail is still the queue's (the outbox never merges into the
	// event it is handing out), so it may change in place.
	l.Count += d.Count
	return true
}

// mergeErrors folds an Error into the queued tail when both are about the
// same peer and neither is a disconnection, so that one peer's repeated
// errors (data it keeps sending on a channel the handler does not take)
// hold one slot of the Outcomes queue, not all of them: past the queue's
// limit the Errors about other peers would be dropped. Only the tail is
// looked at, as mergeDropped does: a peer whose errors alternate with other
// events holds at most one slot per event queued among them.
func mergeErrors(last *Event, ev Event) bool {
	e, ok := ev.(*Error)
	if !ok || e.Disconnected {
		return false
	}
	l, ok := (*last).(*Error)
	if !ok || l.Disconnected || l.Peer != e.Peer {
		return false
	}
	l.Repeats += 1 + e.Repeats
	return true
}
