//go:build unix

package store

import (
	"errors"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// readLock takes a shared lock on the LOCK file name, for a store opened
// read-only: it conflicts with the exclusive lock of a process that has the
// store open to write (pebble's, and the store's), not with other readers.
// It opens the file read-only and creates nothing, so that it works on a
// read-only file system and changes nothing, not even the file's time
// (pebble's own lock creates and truncates it). A store without a LOCK file
// is open nowhere: there is nothing to lock.
func readLock(name string) (io.Closer, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return io.NopCloser(nil), nil
	}
	if err != nil {
		return nil, err
	}
	spec := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &spec); err != nil {
		f.Close()
		return nil, err // EAGAIN or EACCES: held (isLockConflict)
	}
	return f, nil // closing it drops the lock
}
