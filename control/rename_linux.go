package control

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// moveNoReplace renames oldpath to newpath unless newpath exists (an
// error matching fs.ErrExist). A file system without RENAME_NOREPLACE
// (EINVAL), or a kernel before 3.15 (ENOSYS), gets a hard link instead,
// which never replaces either.
func moveNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return linkNoReplace(oldpath, newpath)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}
