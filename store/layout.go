package store

import (
	"encoding/binary"
	"fmt"
)

// On-disk layout, version 1. One pebble database in the directory DirName
// inside the data directory. Every key starts with one byte naming its table:
//
//	'm' meta         "version" -> LayoutVersion, 8-byte big-endian uint64
//	                 "created" -> creation time, RFC 3339 text (informational)
//	                 "peer"    -> the owner's peer ID, text (Options.PeerID)
//	'o' outgoing     8-byte big-endian exchange ID            -> Outgoing record
//	'i' incoming     len(peer) (1 byte), peer, 8-byte BE ID   -> Incoming record
//	'd' deadletters  8-byte big-endian exchange ID            -> DeadLetter record
//
// The peer's length prefix gives each peer a key prefix no other peer's keys
// start with (without it, a scan for peer "a" would also find peer "ab"), so
// one peer's records can be read with an iterator, in ID order. Records are
// encoded as codec.go describes; Load ignores keys of tables it does not
// know. A new store is built in DirName+".new" and renamed into place once
// its meta is durable (see create). A change that old code cannot read
// raises LayoutVersion; old code then refuses the store with ErrVersion
// instead of misreading it.
//
// The directory holds pebble's own files (LOCK, MANIFEST-*, marker.*,
// OPTIONS-*, *.log for the write-ahead log, *.sst), written in pebble's
// format major version storeFormat.

// The store's directory name and layout version.
const (
	// DirName is the store's directory inside the data directory.
	DirName = "store"
	// FileName is the store file of the earlier, bbolt-based layout, kept
	// only so that Open can refuse to start empty beside one (see Open).
	// Nothing is written to it.
	//
	// Deprecated: the store is the directory DirName.
	FileName = "store.db"
	// LayoutVersion is the on-disk layout version this code writes and reads.
	LayoutVersion = 1
)

// tableID names a table: a key prefix, without a package-level []byte that
// anyone could modify.
type tableID uint8

const (
	tableMeta tableID = iota
	tableOutgoing
	tableIncoming
	tableDeadLetters
)

// prefix is the byte every key of the table starts with.
func (t tableID) prefix() byte {
	switch t {
	case tableMeta:
		return 'm'
	case tableOutgoing:
		return 'o'
	case tableIncoming:
		return 'i'
	case tableDeadLetters:
		return 'd'
	}
	panic(fmt.Sprintf("store: unknown table %d", uint8(t)))
}

func (t tableID) String() string {
	switch t {
	case tableMeta:
		return "meta"
	case tableOutgoing:
		return "outgoing"
	case tableIncoming:
		return "incoming"
	case tableDeadLetters:
		return "deadletters"
	}
	return fmt.Sprintf("table(%d)", uint8(t))
}

// key returns the full key of k in table t.
func (t tableID) key(k []byte) []byte {
	return append(append(make([]byte, 0, 1+len(k)), t.prefix()), k...)
}

// bounds returns the iterator bounds [lower, upper) of table t.
func (t tableID) bounds() (lower, upper []byte) {
	p := t.prefix()
	return []byte{p}, []byte{p + 1}
}

const (
	metaVersion = "version"
	metaCreated = "created"
	// metaPeer was added to layout 1 without a new version: older code
	// never reads it, and a store without it is adopted (see checkPeer).
	metaPeer = "peer"
)

func idKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), id)
}

func parseIDKey(k []byte) (uint64, error) {
	if len(k) != 8 {
		return 0, fmt.Errorf("key of %d bytes, want 8", len(k))
	}
	return binary.BigEndian.Uint64(k), nil
}

// incomingKey requires len(peer) <= maxPeerLen, which Batch checks.
func incomingKey(peer string, id uint64) []byte {
	k := make([]byte, 0, 1+len(peer)+8)
	k = append(k, byte(len(peer)))
	k = append(k, peer...)
	return binary.BigEndian.AppendUint64(k, id)
}

func parseIncomingKey(k []byte) (string, uint64, error) {
	if len(k) < 1 || len(k) != 1+int(k[0])+8 {
		return "", 0, fmt.Errorf("malformed key of %d bytes", len(k))
	}
	n := 1 + int(k[0])
	return string(k[1:n]), binary.BigEndian.Uint64(k[n:]), nil
}
