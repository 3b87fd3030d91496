// Package gossip spreads the membership document between members over the
// libp2p protocol /bitvmx/membership/1.0.0 and applies every valid newer
// version to the node's allowlist at once.
//
// # Protocol
//
// One stream is one session, the same whoever opened it: each side writes
// a Hello (its version and that version's hash); the side that is ahead
// then writes every version the other lacks, oldest first, and both close
// their write side. When a Hello names a version the other side holds
// under another hash, both sides send their document of that version
// instead: a Hello is not signed, so a fork is reported ([Conflict]) only
// once the peer's document verifies against the version before it; one
// that cannot be checked is reported as [ReasonForkUnchecked], and a fork
// named again within 10 minutes is not exchanged again. A session runs
// when a connection to a member opens (the dialing side opens the stream)
// and towards every connected member each time the node applies a new
// version (a push). docs/PROTOCOL.md gives the wire format.
//
// # Applying a version
//
// A received or submitted version is checked with [membership.VerifyNext]
// against the node's current one, persisted with [membership.SaveNewer],
// then handed to [allowlist.List.Replace]: new members are admitted, and
// the p2p node, which watches the list, disconnects removed ones, the path a
// live reload of the YAML allowlist takes. Versions only go forward.
//
// # Misbehaviour
//
// A version that does not decode, links to another history or lacks the
// threshold of signatures is refused, reported ([Rejected], a metric) and
// costs its sender a misbehaviour token through [Config.Charge]; so does a
// version not newer than the Hello this node sent, or than the version sent
// before it in the session, which no honest peer sends; so does a fork
// claimed in a Hello and not shown, or naming another document of a version
// than a fork exchange with it did in the last 10 minutes
// ([ReasonUnproven]), and a member's
// sessions opened while one of its own runs, past the first. A version
// applied meanwhile from another session, an expired one, or a gap is
// reported but not charged: an honest peer can send them.
//
// What a peer claims without proof is not trusted for an alarm: [Behind]
// comes at most once a minute per peer, and the log lines about a peer are
// rate-limited per peer.
//
// # Imports
//
// The package needs only a small part of a libp2p host ([Host]) and a
// charge function, so it sits next to membership, below handler/, and does
// not import p2p.
package gossip
