package control

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The control socket is the node's only access control: it must never be
// reachable by another user, not even for the moment between bind (which
// gives it the umask's mode) and setting SocketMode. These tests run with
// umask 0 in a directory anyone may enter, as an --api path outside the
// data directory can be.

// permissive sets the process umask to 0 for the test and returns a
// directory of mode 0777. The umask is process-wide: the tests of this
// package do not run in parallel.
func permissive(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	old := unix.Umask(0)
	t.Cleanup(func() { unix.Umask(old) })
	return dir
}

// setHook installs testHookBound for the test.
func setHook(t *testing.T, f func(tmp string)) {
	t.Helper()
	testHookBound = f
	t.Cleanup(func() { testHookBound = nil })
}

// entries lists dir's names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range des {
		names = append(names, d.Name())
	}
	return names
}

// listen is Listen, whose socket the test closes and removes.
func listen(t *testing.T, path string) *net.UnixListener {
	t.Helper()
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ln.Close()
		_ = os.Remove(path)
	})
	return ln
}

// inotifyEvent is one event inotify reported on a directory's entry.
type inotifyEvent struct {
	mask uint32
	name string
}

// watchDir reports, when called, every creation, rename into and metadata
// change (chmod among them) of an entry of dir since watchDir returned.
// The kernel queues an event as the operation happens, so what read
// returns after an operation includes all of its events: nothing to wait
// for.
func watchDir(t *testing.T, dir string) (read func() []inotifyEvent) {
	t.Helper()
	// No skip when inotify is short of instances: a test that cannot
	// watch proves nothing, and Linux (all the project supports here) has
	// inotify; a machine out of instances should say so.
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ATTRIB); err != nil {
		t.Fatal(err)
	}
	return func() []inotifyEvent {
		var evs []inotifyEvent
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if errors.Is(err, unix.EAGAIN) {
				return evs
			}
			if err != nil {
				t.Fatal(err)
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				// struct inotify_event: wd, mask, cookie, len, then len
				// bytes of NUL-padded name.
				mask := binary.NativeEndian.Uint32(buf[off+4:])
				l := int(binary.NativeEndian.Uint32(buf[off+12:]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+l]), "\x00")
				evs = append(evs, inotifyEvent{mask, name})
				off += unix.SizeofInotifyEvent + l
			}
		}
	}
}

// The socket appears at its path with SocketMode already: its mode is
// never changed there (a chmod is an IN_ATTRIB event on the directory),
// so no moment exists in which the umask's mode let others connect.
func TestSocketAppearsWithItsMode(t *testing.T) {
	dir := permissive(t)
	path := filepath.Join(dir, SocketName)
	read := watchDir(t, dir)
	listen(t, path)
	appeared := false
	for _, ev := range read() {
		if ev.name != SocketName {
			continue
		}
		switch {
		case ev.mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
			appeared = true
		case ev.mask&unix.IN_ATTRIB != 0 && appeared:
			t.Fatalf("the socket's mode (or other metadata) changed after it appeared at %s: it was reachable with the umask's mode until then", path)
		}
	}
	if !appeared {
		t.Fatalf("no creation of %s seen", path)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != SocketMode {
		t.Fatalf("socket mode %v, want a socket with %v", fi.Mode(), SocketMode)
	}
	if names := entries(t, dir); !slices.Equal(names, []string{SocketName}) {
		t.Fatalf("directory holds %q: want the socket alone (no temporary directory left)", names)
	}
	// Bound elsewhere and renamed, it still takes connections at path.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dialing the socket at its path: %v", err)
	}
	_ = c.Close()
}

// While the socket has the umask's mode it lies in a directory of mode
// 0700 beside path, and nothing is at path yet.
func TestSocketBoundInPrivateDirectory(t *testing.T) {
	dir := permissive(t)
	path := filepath.Join(dir, SocketName)
	called := false
	setHook(t, func(tmp string) {
		called = true
		fi, err := os.Lstat(tmp)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() == SocketMode {
			t.Fatalf("the bound socket already has %v: the test no longer sees the umask's mode", SocketMode)
		}
		priv := filepath.Dir(tmp)
		if filepath.Dir(priv) != dir {
			t.Fatalf("bound in %s, want a directory beside %s (same file system)", priv, path)
		}
		di, err := os.Lstat(priv)
		if err != nil {
			t.Fatal(err)
		}
		if !di.IsDir() || di.Mode().Perm() != 0o700 {
			t.Fatalf("the socket %s (mode %v) is in %s of mode %v: others could reach it", tmp, fi.Mode().Perm(), priv, di.Mode())
		}
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s exists before the socket has its mode: %v", path, err)
		}
	})
	listen(t, path)
	if !called {
		t.Fatal("the hook was not called")
	}
}

// What appears at path while the socket is being bound (another node
// starting on the same path, a file) is never replaced: Listen fails with
// ErrInUse and leaves nothing of its own behind.
func TestListenNeverReplacesWhatAppeared(t *testing.T) {
	dir := permissive(t)
	path := filepath.Join(dir, SocketName)
	setHook(t, func(string) {
		if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if ln, err := Listen(path); !errors.Is(err, ErrInUse) {
		if ln != nil {
			_ = ln.Close()
		}
		t.Fatalf("Listen with a file created at its path meanwhile: %v, want ErrInUse", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep" {
		t.Fatalf("the file at %s after Listen: %q, %v", path, b, err)
	}
	if names := entries(t, dir); !slices.Equal(names, []string{SocketName}) {
		t.Fatalf("directory holds %q: want the file alone", names)
	}
}

// The fallback for file systems without RENAME_NOREPLACE: a link that
// never replaces, and the socket answers at its new name.
func TestLinkNoReplace(t *testing.T) {
	dir := t.TempDir()
	tmp, path := filepath.Join(dir, "tmp"), filepath.Join(dir, SocketName)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := linkNoReplace(tmp, path); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dialing the socket by its link: %v", err)
	}
	_ = c.Close()
	if err := linkNoReplace(tmp, path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("a second link over the first: %v, want fs.ErrExist", err)
	}
}
