//go:build windows || plan9 || solaris || aix || android

package store

import "os"

// releaseLock is a no-op where bbolt locks with fcntl or LockFileEx: those
// locks go away when the file is closed.
func releaseLock(*os.File) {}
