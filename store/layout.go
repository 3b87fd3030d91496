package store

import (
	"encoding/binary"
	"fmt"
)

// On-disk layout, version 1. One bbolt file, FileName, in the data directory:
//
//	meta         "version" -> LayoutVersion, 8-byte big-endian uint64
//	             "created" -> creation time, RFC 3339 text (informational)
//	outgoing     8-byte big-endian exchange ID            -> Outgoing record
//	incoming     len(peer) (1 byte), peer, 8-byte BE ID   -> Incoming record
//	deadletters  8-byte big-endian exchange ID            -> DeadLetter record
//
// The peer's length prefix gives each peer a key prefix no other peer's keys
// start with (without it, a scan for peer "a" would also find peer "ab"), so
// one peer's records can be read with a cursor, in ID order. Records are
// encoded as codec.go describes. A new file is built as store.db.new and
// renamed into place (see create). A change that old code cannot read
// raises LayoutVersion; old code then refuses the file with ErrVersion
// instead of misreading it.

// The store file's name and layout version.
const (
	// FileName is the store file's name inside the data directory.
	FileName = "store.db"
	// LayoutVersion is the on-disk layout version this code writes and reads.
	LayoutVersion = 1
)

// bucketID names a bucket without a package-level []byte that anyone could
// modify.
type bucketID uint8

const (
	bucketMeta bucketID = iota
	bucketOutgoing
	bucketIncoming
	bucketDeadLetters
)

// dataBuckets returns the buckets that hold records, all created with the file.
func dataBuckets() [3]bucketID {
	return [...]bucketID{bucketOutgoing, bucketIncoming, bucketDeadLetters}
}

func (b bucketID) String() string {
	switch b {
	case bucketMeta:
		return "meta"
	case bucketOutgoing:
		return "outgoing"
	case bucketIncoming:
		return "incoming"
	case bucketDeadLetters:
		return "deadletters"
	}
	return fmt.Sprintf("bucket(%d)", uint8(b))
}

func (b bucketID) name() []byte { return []byte(b.String()) }

const (
	metaVersion = "version"
	metaCreated = "created"
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
