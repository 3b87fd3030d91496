package gossip

import (
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// Event is what a [Service] reports on its Events channel.
type Event interface{ event() }

// Applied reports a version the node now uses: persisted and in force.
type Applied struct {
	Version uint64
	Hash    membership.Hash
	// From is the member that sent it; empty for a local Submit.
	From peer.ID
	// Added and Removed are the members that joined and left.
	Added, Removed []peer.ID
}

// Rejected reports a version, or a session, that a peer sent and the node
// refused, or a fork a peer showed that the node could not check
// ([ReasonForkUnchecked]).
type Rejected struct {
	From    peer.ID
	Version uint64 // 0 when the document did not decode
	Reason  Reason
	// Charged says whether it cost From a misbehaviour token.
	Charged bool
	// Report lists the signatures that counted and those that did not,
	// when the checks got that far. Its Rejected keeps only the first 16
	// rejections in document order: a sender's document may hold a
	// thousand, and every event is held until read.
	Report membership.Report
	// Omitted counts the rejections left out of Report.Rejected.
	Omitted int
	Err     error
}

// Behind reports a member whose Hello named a newer version than this
// node's and that could not hand over the versions in between (it no
// longer keeps them, or the histories differ). The operator must install
// them by hand. The Hello is not signed: the member may be lying, so a
// peer gets at most one Behind a minute, and none for the version it was
// last reported at.
type Behind struct {
	Peer        peer.ID
	PeerVersion uint64
	Version     uint64
}

// Conflict reports a member holding another valid document with the same
// version number: the membership forked (possible only with a threshold of
// half the members or less, or a colluding majority). It is reported only
// once the member sent that document and it verified against the version
// before it, and once per member, version and document (the node remembers
// the last 1024 forks reported; past them it forgets the oldest, which may
// be reported again). Nothing is applied.
type Conflict struct {
	Peer    peer.ID
	Version uint64
	// Hash is this node's document of Version, PeerHash the member's.
	Hash     membership.Hash
	PeerHash membership.Hash
	// PeerDocument is the member's document: with this node's, the
	// proof that a threshold of members signed two versions.
	PeerDocument *membership.Document
}

func (Applied) event()  {}
func (Rejected) event() {}
func (Behind) event()   {}
func (Conflict) event() {}

// Reason says why something a peer sent was refused. Its value is the
// metric label.
type Reason string

// The reasons.
const (
	// ReasonMalformed: a frame or document that does not decode, is too
	// large, is out of order in the session (a version not newer than our
	// Hello's or the one sent before it included), or breaks the body
	// rules. Charged.
	ReasonMalformed Reason = "malformed"
	// ReasonBadLink: a next version that does not link to the current
	// one. Charged.
	ReasonBadLink Reason = "bad_link"
	// ReasonThreshold: fewer valid signatures by current members than
	// the threshold (bad, forged, duplicated or non-member signatures do
	// not count). Charged.
	ReasonThreshold Reason = "threshold"
	// ReasonStale: a version at or below the current one, applied
	// meanwhile from another session (or submitted locally). Not charged.
	ReasonStale Reason = "stale"
	// ReasonGap: a version beyond the next one. Not charged.
	ReasonGap Reason = "gap"
	// ReasonExpired: a next version whose expiry has passed. Not charged.
	ReasonExpired Reason = "expired"
	// ReasonNotMember: a session opened by a peer that is not a member of
	// the current version. Not charged: a removed member may still be
	// disconnecting.
	ReasonNotMember Reason = "not_member"
	// ReasonBusy: a session opened by a member that already has one
	// running (two processes sharing a key can do that). The first such
	// refusal while a session runs is not charged (an honest peer's next
	// session can overtake the end of its last); later ones are.
	ReasonBusy Reason = "busy"
	// ReasonUnproven: a Hello naming a version this node holds with
	// another hash, the peer then ending its side without that document
	// (a fork claimed, not shown), or naming, within 10 minutes of a fork exchanged with
	// the same member for that version, another hash than it did then.
	// Charged.
	ReasonUnproven Reason = "unproven_fork"
	// ReasonForkUnchecked: a member showed another document of a version
	// this node holds that it cannot check: the version before it is not
	// kept (version 1, or older than the history), or the document links
	// to another one (the histories split earlier); or it named one and
	// the session was cut short (reset, connection lost, deadline) before
	// the document came. Not a fork reported, not charged: an honest
	// member sends that, or loses its connection so.
	ReasonForkUnchecked Reason = "fork_unchecked"
	// ReasonLocal: the version was valid but the node could not persist
	// or apply it. Not charged.
	ReasonLocal Reason = "local_error"
)

var allReasons = []Reason{ReasonMalformed, ReasonBadLink, ReasonThreshold, ReasonStale, ReasonGap, ReasonExpired, ReasonNotMember, ReasonBusy, ReasonUnproven, ReasonForkUnchecked, ReasonLocal}
