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
// not a socket (a symlink included) is never removed.
//
// The socket never exists at path with another mode than SocketMode:
// others cannot connect to it, even in a directory they can enter (an
// --api path outside the data directory) and with a permissive umask. The
// listener's Addr names where it was bound (see bindPrivate), not path.
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
	return bindPrivate(path)
}

// tmpDirPattern names the private directory bindPrivate creates beside the
// socket (os.MkdirTemp's pattern): a dot file, out of the way of listings.
const tmpDirPattern = ".control-socket-*"

// tmpSocketName is the socket's name in that directory: short, so that
// sockaddrPath's /proc/self/fd form of a long path fits an address.
const tmpSocketName = "s"

// testHookBound, set by tests only, is called with the temporary path of
// the socket just bound, before its mode is set and it is moved to path.
var testHookBound func(tmp string)

// bindPrivate binds the socket at path without a moment in which others
// can reach it. bind gives a socket the mode the process umask leaves, and
// changing the umask would race every goroutine creating files; so the
// socket is bound inside a fresh directory of mode 0700 next to path,
// which nobody else can enter, given SocketMode there, and only then
// renamed to path. The rename never replaces: a file or socket that
// appeared at path since Listen looked is left alone, and Listen fails.
func bindPrivate(path string) (_ *net.UnixListener, err error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), tmpDirPattern)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Empty after the rename, or holding the bound socket if anything
	// failed (or a second name of it, after linkNoReplace).
	defer func() { _ = os.RemoveAll(dir) }()
	tmp := filepath.Join(dir, tmpSocketName)
	addr, done, err := sockaddrPath(tmp)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	done()
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// The address may be a /proc/self/fd name that means nothing once
	// done closed the directory, and the socket moves to path anyway: the
	// Server removes it by path.
	ln.SetUnlinkOnClose(false)
	defer func() {
		if err != nil {
			_ = ln.Close()
		}
	}()
	if testHookBound != nil {
		testHookBound(tmp)
	}
	if err := os.Chmod(tmp, SocketMode); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := moveNoReplace(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w: %s was created by another process while this one bound it (not replaced)", ErrInUse, path)
		}
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// linkNoReplace gives the file at oldpath the name newpath, failing with
// an error matching fs.ErrExist if newpath exists: link(2) never replaces.
// oldpath stays a second name of the file, for the caller to remove.
func linkNoReplace(oldpath, newpath string) error {
	return os.Link(oldpath, newpath)
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
