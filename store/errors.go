package store

import (
	"errors"
	"strings"
)

// Sentinel errors. Every error the store returns for one of these conditions
// wraps the sentinel, so callers branch with errors.Is; the message of the
// wrapping error names the store's directory (or the file at fault).
var (
	// ErrLocked means another process, or another Open in this process,
	// holds the store. Only one process may use a data directory.
	ErrLocked = errors.New("store: in use by another process")
	// ErrCorrupt means the store exists but is not a valid store: a
	// directory that is not a pebble database or lacks the store's meta, a
	// damaged MANIFEST, OPTIONS or sstable, a write-ahead log damaged before
	// records that prove the damaged one was synced, or a record that does
	// not decode. A write-ahead log cut at a record boundary, emptied or
	// removed cannot be told from one a crash ended there, and opens as the
	// shorter store it holds (docs/durability.md). The store never starts empty over such a directory
	// (nor beside a store file of the earlier bbolt layout): an operator
	// must look.
	ErrCorrupt = errors.New("store: corrupt")
	// ErrVersion means the store's layout version is newer than this code
	// knows: a newer release wrote it, and downgrading is not supported.
	ErrVersion = errors.New("store: unsupported layout version")
	// ErrWrongPeer means the store belongs to another node: it records a
	// peer ID other than Options.PeerID. Its exchanges were started and
	// received under that identity; resumed under another, peers would see
	// them come from a node they never dealt with.
	ErrWrongPeer = errors.New("store: belongs to another peer")
	// ErrFull means a batch that adds data was refused because the store
	// holds Options.MaxBytes or more. Deletes are never refused.
	ErrFull = errors.New("store: full")
	// ErrClosed means the store was closed before the call.
	ErrClosed = errors.New("store: closed")
	// ErrFailed means the store met an error it cannot go past (pebble
	// failed to write its log in a commit, or a flush failed for want of
	// disk or on an I/O error) and refuses every commit, and every read
	// started after it, from then on (what pebble holds in memory may
	// include the commit that failed). Opening it again (a restart)
	// recovers what is on disk. See Store.Err and Store.Failed. (A commit
	// stalled behind the failed flush returns only once there is room; a
	// failed MANIFEST write, on pebble's own goroutines, ends the process:
	// see docs/durability.md.)
	ErrFailed = errors.New("store: failed")
	// ErrReadOnly means a batch was committed to a store opened with
	// Options.ReadOnly.
	ErrReadOnly = errors.New("store: opened read-only")
	// ErrInvalid means a batch held a record the store cannot keep (a zero
	// outgoing ID, an empty or over-long peer, an unknown kind or state, a
	// time outside the years 1678-2262). It is a caller bug, not a disk
	// condition, and nothing of that batch was written.
	ErrInvalid = errors.New("store: invalid record")
)

// fileError is an error about the store: it reads as one sentence naming the
// store's directory or file ("store: /x/store is in use by another process")
// while still matching both its sentinel and its cause with errors.Is and
// errors.As.
type fileError struct {
	kind   error  // one of the sentinels above
	path   string // the store's directory, or the file at fault
	phrase string // what is wrong with the file, e.g. "is corrupt"
	detail string // where or why, may be ""
	cause  error  // the underlying error, may be nil
}

func (e *fileError) Error() string {
	var b strings.Builder
	b.WriteString("store: ")
	b.WriteString(e.path)
	b.WriteByte(' ')
	b.WriteString(e.phrase)
	if e.detail != "" {
		b.WriteString(": ")
		b.WriteString(e.detail)
	}
	if e.cause != nil {
		b.WriteString(": ")
		b.WriteString(e.cause.Error())
	}
	return b.String()
}

// Unwrap exposes both the sentinel and the cause to errors.Is and errors.As.
func (e *fileError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func lockedError(path string, cause error) error {
	return &fileError{kind: ErrLocked, path: path, phrase: "is in use by another process", cause: cause}
}

func corruptError(path, detail string, cause error) error {
	return &fileError{kind: ErrCorrupt, path: path, phrase: "is corrupt", detail: detail, cause: cause}
}

func closedError(path string) error {
	return &fileError{kind: ErrClosed, path: path, phrase: "is closed"}
}

func readOnlyError(path string) error {
	return &fileError{kind: ErrReadOnly, path: path, phrase: "is open read-only"}
}
