// Package dht is the experimental discovery layer of BitVMX operators: a
// private Kademlia DHT (go-libp2p-kad-dht) scoped to the allowlist, in which
// every node publishes a signed record of its addresses with an expiry, and
// finds the others' by peer ID.
//
// # The network
//
// The DHT runs on the host of a p2p.Node, in server mode, under the protocol
// /bitvmx/kad/1.0.0 (ProtocolPrefix), so it never meets the public IPFS DHT.
// A node joins through the bootstrap peers of its Config (several may be
// given; one that is down is skipped); a node without any is a bootstrap
// node, which others join. Ready is closed once the routing table holds a
// peer: before that, lookups have nobody to ask.
//
// Only allowlisted peers take part. The node's connection gater refuses
// everyone else; on top of that, the routing-table and query filters admit
// only allowlisted peers that the rate limiter has not banned, so a stranger
// can neither join nor be handed from one node to the next. A peer leaving
// the allowlist is evicted from the routing table at once; one the rate
// limiter bans is evicted within Config.SweepInterval, or at once by Evict
// (call it on the node's ConnectionLimit event).
//
// # Node records
//
// A Record says: this peer, at these addresses, as of Seq, until Expires. It
// travels as a libp2p signed envelope (domain RecordDomain, payload type
// RecordPayloadType, schema in pb/record.proto) signed by the node's identity
// key, under the DHT key RecordKey(peer). Every node validates every record
// it stores or receives: the signature, that the signer is the peer the key
// names, the limits, that the peer is allowlisted, and the expiry; among
// valid records the highest Seq wins. A node republishes its record every
// Config.Refresh and as soon as its addresses change, so others pick the
// change up without a restart. A node whose newest record has expired counts
// as inactive: Find returns that record with ErrExpired.
//
// # Sealed records
//
// With Config.Membership set, records are sealed (format 2,
// SealedRecordPayloadType): the record is encrypted under a fresh key that
// is wrapped for each member of the membership document in force
// (membership/sealbox), and the envelope signs the result. Every node checks
// the clear header (signer, limits, expiry, Seq) without decrypting; Find
// decrypts, and fails with ErrNotRecipient for a record not sealed to this
// node. The node republishes as soon as members join or leave, so a removed
// member cannot read what is published after. Such a node accepts sealed
// records only; a node without Config.Membership, plain ones only.
//
// # Finding peers
//
// Find returns a peer's verified record. Resolve returns its addresses, from
// a cache or a fresh lookup, for the exchange handler to dial; Invalidate
// makes the next Resolve look again after a cached address failed.
//
// docs/dht.md describes the design, the configuration, and what the records
// protect and what they do not.
package dht
