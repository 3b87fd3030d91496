package dht

import "errors"

// Errors callers branch on. Returned errors wrap them with detail; test with
// errors.Is.
var (
	// ErrNotFound: no valid record of the peer was found (and, for Resolve,
	// no address either).
	ErrNotFound = errors.New("dht: peer not found")
	// ErrExpired: the peer's newest record has expired, so the peer counts
	// as inactive. Find returns the expired record along with it.
	ErrExpired = errors.New("dht: peer record expired: peer inactive")
	// ErrNotAllowlisted: the peer is not on the allowlist, so the DHT
	// neither looks it up nor accepts its records.
	ErrNotAllowlisted = errors.New("dht: peer is not on the allowlist")
	// ErrInvalidRecord: a record failed verification (signature, signer,
	// format or limits).
	ErrInvalidRecord = errors.New("dht: invalid node record")
	// ErrNotReady: the routing table is empty, so there is nobody to ask.
	ErrNotReady = errors.New("dht: routing table is empty")
	// ErrClosed: the DHT was closed.
	ErrClosed = errors.New("dht: closed")
	// ErrNoBootstrap: a bootstrap address is malformed or names a peer
	// the allowlist does not hold.
	ErrNoBootstrap = errors.New("dht: bad bootstrap peer")
	// ErrNotRecipient: a sealed record was not sealed to this node's key:
	// the publisher sealed it for a membership version that does not list
	// this node. A member added since reads the publisher's next record,
	// which it makes as soon as it applies the new version.
	ErrNotRecipient = errors.New("dht: sealed record not readable by this node")
)
