package control

import (
	"fmt"
	"golang.org/x/sys/unix"
	"path/filepath"
)

// sockaddrPath returns a path to use in a unix socket address for path,
// which may be longer than a socket address holds: it then opens path's
// directory and names the socket through /proc/self/fd, which the kernel
// resolves to the directory itself. done closes the directory; call it
// once the bind or connect has returned.
func sockaddrPath(path string) (addr string, done func(), err error) {
	if len(path) <= maxSocketPath {
		return path, func() {}, nil
	}
	fd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	addr = fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(path))
	if len(addr) > maxSocketPath {
		_ = unix.Close(fd)
		return "", nil, fmt.Errorf("control socket %s: the file name is too long for a unix socket", path)
	}
	return addr, func() { _ = unix.Close(fd) }, nil
}
