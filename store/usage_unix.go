//go:build unix

package store

import (
	"io/fs"
	"syscall"
)

// allocated is the disk a file takes: its blocks, which count the room a
// file system allocated ahead (pebble preallocates each write-ahead log)
// and leave out holes.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}
