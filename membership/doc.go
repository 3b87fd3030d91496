// Package membership is the allowlist as a versioned object that changes
// only by consensus: each version lists the members (peer ID, name,
// optional IP binding, optional relay permission, optional role) and a threshold M, and a later
// version is valid only if at least M members of the version before it
// signed it. docs/membership.md describes the format, the exact signed
// bytes, the threat model and the operators' signing flow.
//
// # Validity
//
// Version 1 (genesis) is trusted because the operator installs it
// ([VerifyGenesis] checks only its shape and expiry). Version v+1 replaces v
// ([VerifyNext]) when it
//
//   - has version number v+1: an older or equal one is a replay or a
//     rollback ([ErrStale]); a gap is [ErrNotNext];
//   - names sha256 of v's signed bytes as its previous hash ([ErrBadLink]);
//   - has not expired ([ErrExpired]);
//   - carries valid signatures, over exactly its signed bytes, by at least
//     M distinct members of v, where M is v's threshold ([ErrThreshold]).
//
// A signature by a non-member, a second signature by one signer, or one
// that does not verify does not count; [Report] says which and why. Since
// signers are members of the previous version, a member removed in v+1 can
// sign its own removal (it counts, as any member of v), and its signature
// counts for no later version.
//
// # Signed bytes
//
// Members sign [SignPrefix] ("bitvmx-membership-v1\x00") followed by the
// deterministic protobuf encoding of the body (membership/pb) with members
// sorted by the binary form of their peer IDs, no duplicates, prefixes
// canonical and sorted. [Decode] re-encodes what it parsed and refuses a
// body that is not byte-for-byte canonical, so one membership has exactly
// one hash. Signatures use the members' libp2p identity keys (secp256k1 by
// default, ed25519 supported): the key is embedded in the peer ID, so the
// document needs no key field.
//
// # Imports
//
// membership imports allowlist, not the reverse: the allowlist is the
// lower-level mechanism (who may connect, enforced by the gater) and knows
// nothing about how its content is agreed on; membership is one source of
// that content, next to the YAML file. [Document.Entries] produces what
// [allowlist.List.Replace] takes, the path a live reload uses today.
//
// # Propagation
//
// This package holds the document, its verification and its persistence
// ([SaveNewer] never goes back to an older version). Package
// membership/gossip exchanges versions between running members and applies
// them to a node's allowlist. Package membership/sealbox encrypts a payload
// for the members' identity keys; the DHT seals its node records with it
// (docs/dht.md, "Sealed records").
package membership
