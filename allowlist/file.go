package allowlist

import (
	"errors"
	"fmt"
	"os"

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
// file. The file gets mode 0644. Comments of a hand-written file are not
// preserved.
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

// writeFileAtomic replaces path with data in one rename.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := atomicfile.Write(path, data, perm); err != nil {
		return fmt.Errorf("allowlist: save %s: %w", path, err)
	}
	return nil
}
