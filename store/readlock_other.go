//go:build !unix

package store

import (
	"io"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// readLock is pebble's exclusive lock where fcntl's shared locks are not
// available.
func readLock(name string) (io.Closer, error) { return vfs.Default.Lock(name) }
