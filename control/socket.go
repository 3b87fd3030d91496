package control

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// SocketName is the name of the control socket in a node's data directory.
const SocketName = "control.sock"

// SocketMode is the file mode of the control socket: the node's user only.
const SocketMode fs.FileMode = 0o600

// maxSocketPath is the longest path a unix socket address holds on Linux
// (sun_path is 108 bytes, one of them the terminating NUL). Longer paths
// are reached through the directory (sockaddrPath).
const maxSocketPath = 107

// probeTimeout bounds the dial that tells a live socket from a stale one.
const probeTimeout = 2 * time.Second

// ErrInUse is returned by Listen when a live process serves the socket path.
var ErrInUse = errors.New("control socket in use")

// SocketPath is the control socket of the node whose data directory is dir.
func SocketPath(dir string) string { return filepath.Join(dir, SocketName) }

// Listen binds the unix socket at path with mode SocketMode; the caller
// removes the socket file after closing the listener. A socket
// left at path by a node that is gone (nothing accepts on it) is replaced;
// one that a live process serves fails with ErrInUse, and a file that is
// not a socket is never removed.
func Listen(path string) (*net.UnixListener, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("control socket: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("control socket %s: the path exists and is not a socket (not replaced)", path)
	default:
		live, err := probe(path)
		if err != nil {
			return nil, fmt.Errorf("control socket %s: %w", path, err)
		}
		if live {
			return nil, fmt.Errorf("%w: another p2pnode serves %s (stop it, or give this node its own --data-dir or --api)", ErrInUse, path)
		}
		// Stale: left by a node that was killed.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("control socket %s: removing the stale socket: %w", path, err)
		}
	}
	addr, done, err := sockaddrPath(path)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	done()
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// The address may be a /proc/self/fd name that means nothing once
	// done closed the directory: the Server removes the socket by path.
	ln.SetUnlinkOnClose(false)
	// Until this chmod the socket has the umask's mode; the data directory
	// (0700) is what keeps others out of that moment.
	if err := os.Chmod(path, SocketMode); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// probe reports whether a process accepts connections on the socket at
// path. A refused connection means a stale socket; any other failure (no
// permission, say) is an error, never taken for stale.
func probe(path string) (bool, error) {
	addr, done, err := sockaddrPath(path)
	if err != nil {
		return false, err
	}
	defer done()
	c, err := net.DialTimeout("unix", addr, probeTimeout)
	if err == nil {
		_ = c.Close()
		return true, nil
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return false, nil
	}
	return false, err
}
