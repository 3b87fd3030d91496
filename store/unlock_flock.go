//go:build !windows && !plan9 && !solaris && !aix && !android

package store

import (
	"os"
	"syscall"
)

// releaseLock drops bbolt's flock on f. Closing f is not enough after bbolt
// panicked half way through Open: its memory map still references the open
// file, and the lock lives as long as that does.
func releaseLock(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
