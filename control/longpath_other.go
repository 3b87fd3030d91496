//go:build !linux

package control

import "fmt"

// sockaddrPath returns path, which must fit a unix socket address (107
// bytes): only Linux can name a longer one (see longpath_linux.go).
func sockaddrPath(path string) (addr string, done func(), err error) {
	if len(path) > maxSocketPath {
		return "", nil, fmt.Errorf("control socket %s: the path is %d bytes long, unix sockets allow at most %d: give a shorter --api path",
			path, len(path), maxSocketPath)
	}
	return path, func() {}, nil
}
