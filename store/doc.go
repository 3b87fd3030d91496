// Package store is the exchange handler's memory across restarts: what it
// must not lose and must not repeat when the process stops in the middle of
// exchanges.
//
// It keeps, in one directory in the node's data directory (DirName, "store"):
//
//   - the outbox: every exchange this node started (Request or Send) and has
//     not finished, on disk before the caller is told it was accepted, so a
//     restart resumes it;
//   - the inbox: every request or one-way message received, stored before it
//     is acknowledged to the sender, and kept until the application has
//     handled it;
//   - durable dedupe: after that, a small record per received exchange (with
//     the reply, for a request) so that a resent exchange is answered again
//     instead of being delivered twice, even across a restart;
//   - dead letters: outgoing exchanges that failed finally, for an operator
//     to inspect.
//
// Writes are grouped in a Batch that is applied atomically and durably by
// Commit or CommitAsync; writers that commit at the same time share one disk
// flush. Load returns everything at start; Incoming, Outgoing and
// DeadLetter look up one record while the handler runs; EachOutgoing and
// EachDeadLetter walk the outbox and the dead letters a page at a time
// (memory bounded however large they are), and Count counts them.
//
// One process owns a data directory at a time: a second Open, from another
// process or the same one, fails with ErrLocked. A store that is not valid
// (damaged files, or a directory that is not a store) fails with ErrCorrupt
// and is never replaced by an empty store; a store written by a newer layout
// fails with ErrVersion, and one that belongs to another peer
// (Options.PeerID) with ErrWrongPeer. After a crash, every batch whose Commit returned is
// there; a batch still being committed is there whole or not at all.
//
// The directory (store) is a pebble database (github.com/cockroachdb/pebble)
// whose keys start with one byte naming their table: meta, holding the
// layout version (1), and one table each for outgoing, incoming and dead
// letter records, keyed by exchange ID (incoming: by peer and ID), with
// values in the protobuf wire format so that fields can be added later.
// layout.go has the details.
package store
