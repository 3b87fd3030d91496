package membership

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/bitvmx/go-bitvmx-p2p/internal/atomicfile"
)

// ReadFile reads and decodes the document at path. Errors name the path.
func ReadFile(path string) (*Document, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	defer f.Close()
	// One byte past the cap is enough for Decode to refuse an oversized
	// file without reading it whole.
	data, err := io.ReadAll(io.LimitReader(f, MaxDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("membership: %s: %w", path, err)
	}
	d, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("membership: %s: %w", path, errors.Unwrap(err))
	}
	return d, nil
}

// WriteFile writes d to path atomically (a temporary file in the same
// directory, fsynced, renamed over path), whatever path held. Proposal files
// are written this way; the node's current version goes through
// [SaveNewer], which refuses to go back.
func WriteFile(path string, d *Document) error {
	data, err := d.Encode()
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data, 0o644)
}

// SaveNewer persists d at path as the newest version, and refuses, with
// [ErrStale], to replace a document whose version is d's or higher: a node
// that crashes, or is fed an old document, never goes back to an older
// membership. A missing file is created. A file that does not decode is an
// error, not overwritten: it may hold a newer version written by a newer
// release. Concurrent SaveNewer calls on one path, in one process or
// several, are serialized by a lock file next to it (path + ".lock") on
// Unix systems.
//
// SaveNewer does not verify d against the saved version: the caller
// verifies ([VerifyNext]) before it saves.
func SaveNewer(path string, d *Document) error {
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return fmt.Errorf("membership: lock %s: %w", path, err)
	}
	defer unlock()
	old, err := ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("membership: not replacing %s, which cannot be read: %w", path, err)
	case old.Version() >= d.Version():
		return fmt.Errorf("membership: %w", newError(fmt.Sprintf("%s holds version %d; not replacing it with version %d",
			path, old.Version(), d.Version()), ErrStale))
	}
	return WriteFile(path, d)
}

// writeFileAtomic replaces path with data in one rename, so a crash or a
// concurrent reader never sees a half-written document, and syncs the
// directory: a crash must not bring back the older version, which is what
// SaveNewer promises never happens.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := atomicfile.Write(path, data, perm); err != nil {
		return fmt.Errorf("membership: write %s: %w", path, err)
	}
	return nil
}
