//go:build !unix

package store

import "io/fs"

// allocated is the disk a file takes, as far as its size says.
func allocated(fi fs.FileInfo) int64 { return fi.Size() }
