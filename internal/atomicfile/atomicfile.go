// Package atomicfile replaces a file's contents so that a reader, or the
// file system after a crash, sees either the old contents or the new, never
// a part or an empty file.
//
// Hand-written rather than github.com/google/renameio: renameio does not
// sync the directory after the rename, and without that a crash can bring
// the old file back, which callers that promise never to go back to an
// older version (membership.SaveNewer) cannot accept.
package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
)

// Write replaces path with data, mode perm: a temporary file in the same
// directory, written and synced, renamed over path, and the directory
// synced so that the rename is on disk too.
func Write(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; Chmod is not subject to the umask.
	if err := f.Chmod(perm); err != nil {
		return err
	}
	// Without Sync, a crash soon after the rename can leave an empty file
	// under the final name on some file systems.
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes the entries of dir (a rename into it) durable. File systems
// that cannot sync a directory (os.ErrInvalid) are not an error.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
