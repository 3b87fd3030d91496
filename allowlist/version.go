package allowlist

import (
	"crypto/sha256"
	"encoding/hex"
)

// Version identifies the entries a List holds at one moment, for an
// operator comparing what a node enforces with what a file says.
type Version struct {
	// Number counts the versions of this List: 1 for the entries it was
	// created with, plus one for each mutation that changed them (a reload
	// that changes nothing keeps it). 0 for an empty zero List.
	Number uint64
	// Digest is the SHA-256, in hex, of the entries in the file format
	// Save writes, sorted by peer ID: equal entries, equal digests,
	// whatever the order or the comments of the file they came from.
	Digest string
	// Len is the number of entries.
	Len int
}

// Version returns the version of the current entries. It reads one
// snapshot and takes no lock.
func (l *List) Version() Version {
	s := l.load()
	v := Version{}
	if s != nil {
		v.Number, v.Len = s.version, len(s.byID)
	}
	data, err := marshalEntries(s.sorted())
	if err != nil {
		// Entries in a List always encode; an empty digest says otherwise.
		return v
	}
	sum := sha256.Sum256(data)
	v.Digest = hex.EncodeToString(sum[:])
	return v
}
