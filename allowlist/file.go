package allowlist

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/bitvmx/go-bitvmx-p2p/internal/atomicfile"
)

// Load reads the allowlist file at path. A missing or unreadable file, or
// one that does not parse, is an error naming the path (and the line, for a
// parse error): a node must never start with an empty allowlist by mistake.
func Load(path string) (*List, error) {
	entries, err := readFile(path, parseEntries)
	if err != nil {
		return nil, err
	}
	return New(entries...)
}

// Check loads the file at path as Load does, and refuses, as Reload
// refuses it over a non-empty list, a file that lists no peers without
// "allow_empty: true" (an error matching ErrEmptyReload): a file checked
// before a reload must not pass where the reload then fails.
func Check(path string) (*List, error) {
	d, err := readFile(path, parseDocument)
	if err != nil {
		return nil, err
	}
	m, err := buildEntries(d.entries)
	if err != nil {
		return nil, fmt.Errorf("allowlist: %s: %w", path, err)
	}
	if len(m) == 0 && !d.allowEmpty {
		return nil, fmt.Errorf("allowlist: %s: %w: a node reloading it keeps the peers in force (write \"%s: true\" in the file to empty the list on purpose)",
			path, ErrEmptyReload, keyAllowEmpty)
	}
	l := &List{}
	l.snap.Store(newSnapshot(m))
	return l, nil
}

// Reload reads the file at path and replaces the list with it in one step,
// as Replace does. On any error the list keeps its entries and the error
// names the path and line.
//
// A file that lists no peers replaces a non-empty list only when it says
// "allow_empty: true": a truncated or half-written file would otherwise cut
// every peer off. Without it Reload fails with ErrEmptyReload.
func (l *List) Reload(path string) error {
	_, err := l.reload(path)
	return err
}

func (l *List) reload(path string) (Change, error) {
	// Holding the lock while reading keeps concurrent reloads in order: a
	// reload that read an older version of the file cannot publish after
	// one that read a newer version. Readers do not take the lock.
	l.mu.Lock()
	c, err := l.reloadLocked(path)
	l.mu.Unlock()
	l.notify.drain()
	return c, err
}

func (l *List) reloadLocked(path string) (Change, error) {
	d, err := readFile(path, parseDocument)
	if err != nil {
		return Change{}, err
	}
	m, err := buildEntries(d.entries)
	if err != nil {
		return Change{}, fmt.Errorf("allowlist: %s: %w", path, err)
	}
	if n := len(l.current()); len(m) == 0 && n > 0 && !d.allowEmpty {
		return Change{}, fmt.Errorf("allowlist: %s: %w: keeping the %d peers in force (write \"%s: true\" in the file to empty the list on purpose)",
			path, ErrEmptyReload, n, keyAllowEmpty)
	}
	return l.replaceLocked(m), nil
}

// Save writes the list to path in the format Load reads, sorted by peer ID.
// It writes a temporary file in the same directory and renames it over
// path, so a crash or a concurrent Load or Watch never sees a half-written
// file. An existing file keeps its mode; a new one gets mode 0644. Comments
// of a hand-written file are not preserved.
//
// A path that is a symbolic link stays one: the file it points to is
// replaced, next to it, since operators keep the list in a checkout of their
// configuration and link it into place. A link to nothing is an error
// ([ErrDanglingLink]), not a new file where the link was.
func (l *List) Save(path string) error {
	data, err := marshalEntries(l.load().sorted())
	if err != nil {
		return fmt.Errorf("allowlist: encode: %w", err)
	}
	return writeFileAtomic(path, data, 0o644)
}

// readFile reads path and parses it with parse, adding the path to errors.
func readFile[T any](path string, parse func([]byte) (T, error)) (T, error) {
	var zero T
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// "no such file" about a name ls shows would send the
			// operator looking in the wrong place.
			if lerr := danglingLink(path); lerr != nil {
				return zero, fmt.Errorf("allowlist: %w", lerr)
			}
		}
		// The *PathError already names the file and still matches
		// fs.ErrNotExist and friends.
		return zero, fmt.Errorf("allowlist: %w", err)
	}
	v, err := parse(data)
	if err != nil {
		if pe, ok := errors.AsType[*ParseError](err); ok {
			pe.Path = path
			return zero, pe
		}
		return zero, fmt.Errorf("allowlist: %s: %w", path, err)
	}
	return v, nil
}

// writeFileAtomic replaces the file at path with data in one rename. When
// path is a symbolic link, the file it resolves to is replaced and the link
// kept: renamed over, the link would become a plain file that no longer
// follows the configuration it pointed into. An existing file keeps its
// mode (a list kept 0640 stays so); perm is the mode of a new file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	target, err := saveTarget(path)
	if err != nil {
		return fmt.Errorf("allowlist: save %s: %w", path, err)
	}
	if fi, err := os.Stat(target); err == nil {
		perm = fi.Mode().Perm()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("allowlist: save %s: %w", path, err)
	}
	if err := atomicfile.Write(target, data, perm); err != nil {
		return fmt.Errorf("allowlist: save %s: %w", path, err)
	}
	return nil
}

// saveTarget is the file a save to path replaces: path itself, or the file
// a symbolic link at path resolves to.
func saveTarget(path string) (string, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return path, nil // a new file
	case err != nil:
		return "", err
	case fi.Mode()&fs.ModeSymlink == 0:
		return path, nil
	}
	target, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		if lerr := danglingLink(path); lerr != nil {
			return "", lerr
		}
	}
	return target, err
}

// danglingLink is a *LinkError naming where path points when path is a
// symbolic link to a file that does not exist, and nil otherwise.
func danglingLink(path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		return nil
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	dest, _ := os.Readlink(path)
	return &LinkError{Path: path, Dest: dest}
}
