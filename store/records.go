package store

import (
	"fmt"
	"time"
)

// Kind of an exchange, as the handler numbers them; the handler maps its own
// kind to these so that the numbers on disk never depend on its code.
type Kind uint8

// The exchange kinds.
const (
	// KindRequest is an exchange that expects a reply.
	KindRequest Kind = 1
	// KindMessage is a one-way message: an ack ends it.
	KindMessage Kind = 2
)

// String returns the kind's name, for logs and errors.
func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindMessage:
		return "message"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

func (k Kind) valid() bool { return k == KindRequest || k == KindMessage }

// Outgoing is an exchange this node started (Request or Send) and has not
// finished: the outbox. It is on disk before the caller is told it was
// accepted, so a restart resumes it instead of losing it.
type Outgoing struct {
	ID       uint64    // exchange ID, non-zero
	Peer     string    // peer ID string (a libp2p peer.ID converted to string)
	Kind     Kind      // request or one-way message
	Addr     string    // multiaddr text to dial, may be ""
	Payload  []byte    // the application's bytes
	Tag      string    // the caller's label (e.g. the CLI's stdin id), may be ""
	Attempts int       // sends made so far
	Created  time.Time // when the exchange was accepted

	// Ended is when the exchange ended, for one whose Outcome the handler
	// keeps until the application acknowledges it; zero while it runs.
	// Reason and Error say how it ended, Reply holds a request's reply.
	Ended  time.Time
	Reason string
	Error  string
	Reply  []byte
}

// InState is where a received exchange stands.
type InState uint8

// The states of a received exchange.
const (
	// InPending: stored and acknowledged, not yet handled by the application.
	InPending InState = 1
	// InAnswered: a request the application answered; Reply holds the reply
	// payload, resent if the request comes again.
	InAnswered InState = 2
	// InHandled: a one-way message the application acknowledged, or a
	// request that ended unanswered; kept only for dedupe.
	InHandled InState = 3
)

// String returns the state's name, for logs and errors.
func (s InState) String() string {
	switch s {
	case InPending:
		return "pending"
	case InAnswered:
		return "answered"
	case InHandled:
		return "handled"
	}
	return fmt.Sprintf("InState(%d)", uint8(s))
}

func (s InState) valid() bool { return s >= InPending && s <= InHandled }

// Incoming is a request or one-way message received from a peer: the inbox
// while it is pending, and afterwards the durable dedupe record that stops a
// resent exchange from reaching the application twice.
type Incoming struct {
	Peer     string    // the sender's peer ID string
	ID       uint64    // the sender's exchange ID
	Kind     Kind      // request or one-way message
	State    InState   // where the exchange stands
	Payload  []byte    // kept while InPending; the caller clears it when the state moves on
	Reply    []byte    // InAnswered only
	Received time.Time // when it was first received
	Updated  time.Time // last state change, by the wall clock: orders the dedupe records loaded at a start
	// Answered, on an InHandled request: the application answered it, and
	// its reply was dropped to keep the peer's stored replies within their
	// bound (handler.Config.MaxInboxBytesPerPeer). A resend of it is not
	// delivered, and gets no reply. (Without it an InHandled request ended
	// unanswered, and a resend is refused as such.)
	Answered bool
}

// DeadLetter is an outgoing exchange that failed finally, kept for the
// operator to inspect or retry.
type DeadLetter struct {
	Outgoing
	Reason string    // the handler's reason text, e.g. "reply_timeout"
	Error  string    // the error text, may be ""
	Failed time.Time // when it failed
}

// maxPeerLen is the longest peer string the store keeps: incoming keys carry
// the peer's length in one byte. Peer IDs are well under it (about 40 bytes
// raw, 53 as base58 text).
const maxPeerLen = 255

// maxValueLen bounds one encoded record, well below pebble's limit of 4 GiB
// per batch, so that an oversized payload is refused with ErrInvalid up front
// rather than failing inside a shared commit.
const maxValueLen = 1 << 30

func validPeer(p string) error {
	if p == "" {
		return fmt.Errorf("empty peer")
	}
	if len(p) > maxPeerLen {
		return fmt.Errorf("peer is %d bytes, longer than %d", len(p), maxPeerLen)
	}
	return nil
}

// validTime reports whether t survives the round trip through unix
// nanoseconds, the form times take on disk. The zero time is stored as
// "absent" and is always valid.
func validTime(name string, t time.Time) error {
	if t.IsZero() || t.Equal(time.Unix(0, t.UnixNano())) {
		return nil
	}
	return fmt.Errorf("%s %s is outside the years 1678-2262", name, t)
}

func (o *Outgoing) validate() error {
	if o.ID == 0 {
		return fmt.Errorf("zero exchange ID")
	}
	if err := validPeer(o.Peer); err != nil {
		return err
	}
	if !o.Kind.valid() {
		return fmt.Errorf("unknown kind %d", uint8(o.Kind))
	}
	if o.Attempts < 0 {
		return fmt.Errorf("negative attempts %d", o.Attempts)
	}
	if err := validTime("ended", o.Ended); err != nil {
		return err
	}
	return validTime("created", o.Created)
}

func (in *Incoming) validate() error {
	if err := validPeer(in.Peer); err != nil {
		return err
	}
	if !in.Kind.valid() {
		return fmt.Errorf("unknown kind %d", uint8(in.Kind))
	}
	if !in.State.valid() {
		return fmt.Errorf("unknown state %d", uint8(in.State))
	}
	if in.Answered && (in.State != InHandled || in.Kind != KindRequest) {
		return fmt.Errorf("answered on a %s %s", in.State, in.Kind)
	}
	if err := validTime("received", in.Received); err != nil {
		return err
	}
	return validTime("updated", in.Updated)
}

func (d *DeadLetter) validate() error {
	if err := d.Outgoing.validate(); err != nil {
		return err
	}
	return validTime("failed", d.Failed)
}
