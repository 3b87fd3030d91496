package store

// Opening a data directory: finding what is there (a store, an empty or
// half-built directory, something else) and checking the store found
// before trusting it. Creating one where there is none is in create.go.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// errAbsent means there is no store at the path yet.
var errAbsent = errors.New("no store")

// open opens the store at s.path, creating it if there is none, and retrying
// while another Open holds it, until opts.LockTimeout. It reports whether
// this call created the store.
func (s *Store) open(opts Options) (created bool, err error) {
	deadline := time.Now().Add(opts.LockTimeout)
	creations := 0
	for {
		err := s.tryOpen(opts)
		if errors.Is(err, errAbsent) && s.readOnly {
			return false, fmt.Errorf("store: %s: no store to open read-only: %w", s.path, fs.ErrNotExist)
		}
		if errors.Is(err, errAbsent) {
			if creations == 3 {
				// Created, then gone again before it could be opened, three times.
				return false, fmt.Errorf("store: %s keeps disappearing after creation", s.path)
			}
			var made bool
			made, err = create(s.path, opts)
			if err == nil {
				if made {
					creations++
					created = true
				}
				continue
			}
		}
		if !errors.Is(err, errBusy) {
			return created, err
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return false, lockedError(s.path, nil)
		}
		if opts.busy != nil {
			opts.busy()
		}
		time.Sleep(min(wait, 5*time.Millisecond))
	}
}

// storeKind is what inspect found at a store path.
type storeKind int

const (
	kindAbsent storeKind = iota // nothing, or an empty directory
	kindPebble                  // a directory with a pebble MANIFEST marker
)

// manifestMarker starts the name of the file by which pebble records its
// current MANIFEST (format major versions 2 and up: all this pebble writes).
const manifestMarker = "marker.manifest."

// inspect tells what is at path without changing anything: no store, a
// pebble directory, or (ErrCorrupt) something else. A directory is only
// taken for absent if it is empty, but for a LOCK file.
func inspect(path string) (storeKind, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A link to nothing is no absent store: its target (a disk not
		// mounted?) may hold one, which a new store here would hide.
		if target, lerr := os.Readlink(path); lerr == nil {
			return 0, fmt.Errorf("store: %s links to %s, which does not exist: %w", path, target, err)
		}
		return kindAbsent, nil
	case err != nil:
		return 0, fmt.Errorf("store: %w", err)
	case !fi.IsDir():
		return 0, corruptError(path, "not a directory", nil)
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	others := 0
	for _, e := range ents {
		switch name := e.Name(); {
		case strings.HasPrefix(name, manifestMarker):
			return kindPebble, nil
		case name != "LOCK":
			others++
		}
	}
	if others == 0 {
		return kindAbsent, nil
	}
	return 0, corruptError(path, "no pebble MANIFEST marker: not a store directory", nil)
}

// tryOpen makes one attempt at opening the store at s.path. It fails with
// errAbsent if there is none, and with errBusy if another Open holds it.
func (s *Store) tryOpen(opts Options) error {
	kind, err := inspect(s.path)
	if err != nil {
		return err
	}
	if kind == kindAbsent {
		return checkLegacy(filepath.Dir(s.path))
	}
	lock, err := lockDir(s.path, s.readOnly)
	switch {
	case errors.Is(err, errBusy):
		return errBusy
	case errors.Is(err, fs.ErrNotExist):
		return errAbsent // gone since inspect: look again
	case err != nil:
		return fmt.Errorf("store: lock %s: %w", s.path, err)
	}
	// Pebble would take damage in the middle of the last write-ahead log
	// block for a torn tail: see checkWAL.
	if err := checkWAL(s.path); err != nil {
		lock.release()
		return err
	}
	fsys, fsc := newFS(s.log)
	if opts.wrapFS != nil {
		fsys = opts.wrapFS(fsys)
	}
	// First read-only, which changes nothing: a read-write open replays the
	// write-ahead log into sstables and deletes the files the MANIFEST does
	// not name, which a damaged MANIFEST (pebble reads one cut short as far
	// as it goes) could make the files the store's records are in. A
	// read-only store keeps that database.
	v, err := s.verify(fsys, lock, opts.PeerID)
	if err == nil && s.readOnly {
		s.db, s.lock, s.fsc = v.db, lock, fsc
		return nil
	}
	var db *pebble.DB
	if err == nil {
		// The read-write open writes the records of the write-ahead
		// log into an sstable before it returns.
		err = s.checkRoom(fsys, v.replay)
	}
	if err == nil {
		var abandoned bool
		db, abandoned, err = s.openWritable(fsys, lock, fsc, v.replay)
		if abandoned {
			return err // the abandoned open lets go of lock and fsc
		}
	}
	if err == nil {
		err = checkLayout(db, s.path)
		if err == nil && v.adopt {
			err = setMeta(db, s.path, metaPeer, []byte(opts.PeerID))
		}
		if err != nil {
			closePebble(db, s.path)
		}
	}
	if err != nil {
		_ = fsc.Close()
		lock.release()
		return err
	}
	s.db, s.lock, s.fsc = db, lock, fsc
	return nil
}

// verified is what verify found.
type verified struct {
	adopt  bool       // the store is to record the peer as its owner
	replay uint64     // bytes of write-ahead log not yet in sstables (logReadsFS)
	db     *pebble.DB // the read-only database, kept for a read-only store
}

// verify opens the store read-only and checks its layout, its owner (see
// checkPeer) and that every sstable opens (their data blocks are checked as
// they are read). It reports whether the store is to record peer as its
// owner, and how much of the write-ahead log a read-write open replays. A
// read-only store keeps the database; otherwise it is closed.
func (s *Store) verify(fsys vfs.FS, lock *dirLock, peer string) (v verified, err error) {
	var logBytes atomic.Uint64
	o := s.pebbleOptions(logReadsFS{FS: fsys, n: &logBytes}, lock, false)
	o.ReadOnly = true
	o.FormatMajorVersion = pebble.FormatDefault // the store's own: no ratchet
	db, err := openPebble(s.path, o)
	if err != nil {
		return verified{}, err
	}
	v.replay = logBytes.Load()
	err = checkLayout(db, s.path)
	if err == nil {
		v.adopt, err = checkPeer(db, s.path, peer)
		v.adopt = v.adopt && !s.readOnly // checked, not recorded
	}
	if err == nil {
		err = checkTables(db, s.path)
	}
	if err == nil && s.readOnly {
		v.db = db
		return v, nil
	}
	if cerr := closeErr(db, s.path); err == nil {
		err = cerr
	}
	return v, err
}

// checkPeer refuses a store that records an owner other than peer
// (ErrWrongPeer), and reports whether a store that records none is to
// record peer: a store made before stores recorded their owner is taken
// over by the first node that opens it with its key, which is the node
// that made it unless the operator pointed another at it meanwhile (the
// layout does not change: older code never reads the key). An empty peer
// (a tool without the node's key) checks nothing.
func checkPeer(db *pebble.DB, path, peer string) (adopt bool, err error) {
	if peer == "" {
		return false, nil
	}
	defer recoverPebble(path, &err)
	v, closer, err := db.Get(tableMeta.key([]byte(metaPeer)))
	if errors.Is(err, pebble.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, pebbleError(path, "read", err)
	}
	defer closer.Close()
	if !printable(v) {
		return false, corruptError(path, fmt.Sprintf("meta %q is not a peer ID: %x", metaPeer, v), nil)
	}
	if owner := string(v); owner != peer {
		return false, &fileError{kind: ErrWrongPeer, path: path,
			phrase: fmt.Sprintf("belongs to peer %s, not %s", owner, peer)}
	}
	return false, nil
}

// printable reports whether b is non-empty printable ASCII, as the text
// form of a peer ID is: anything else is not printed as it is.
func printable(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return len(b) > 0
}

// setMeta writes the meta key k, synced: Open must not report a store as
// its caller's until that is durable.
func setMeta(db *pebble.DB, path, k string, v []byte) (err error) {
	defer recoverPebble(path, &err)
	if err := db.Set(tableMeta.key([]byte(k)), v, pebble.Sync); err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	return nil
}

// checkTables opens every sstable's footer, index and properties.
func checkTables(db *pebble.DB, path string) (err error) {
	defer recoverPebble(path, &err)
	if _, err := db.SSTables(pebble.WithProperties()); err != nil {
		return pebbleError(path, "read", err)
	}
	return nil
}

// checkLegacy refuses to start a new store beside a store file of the earlier
// bbolt layout: its exchanges would be silently dropped. An empty file, which
// holds nothing, does not count.
func checkLegacy(dir string) error {
	legacy := filepath.Join(dir, FileName)
	if fi, err := os.Stat(legacy); err == nil && fi.Size() > 0 {
		return &fileError{kind: ErrCorrupt, path: legacy, phrase: "is corrupt",
			detail: "a store file of an earlier release (bbolt), which this release does not read; " +
				"it keeps its store in " + filepath.Join(dir, DirName) + " and will not start empty beside it"}
	}
	return errAbsent
}

// pebbleOptions returns the options of s's pebble database.
func (s *Store) pebbleOptions(fsys vfs.FS, lock *dirLock, create bool) *pebble.Options {
	o := pebbleOptions(s.log.Named("pebble"), fsys, lock.pebble,
		pebbleHooks{fatal: s.fail, background: s.backgroundError, flushFailed: s.flushFailed, limit: s.limit,
			memTable: memTableFor(s.maxBytes)})
	if create {
		o.ErrorIfExists = true
	} else {
		// Never create a database where one should be: inspect saw a
		// MANIFEST marker; if pebble finds no MANIFEST, that is damage.
		o.ErrorIfNotExists = true
	}
	return o
}

// fail records that pebble cannot go on (Logger.Fatalf): every later commit
// fails with err.
func (s *Store) fail(err error) {
	var fe *fatalError
	if errors.As(err, &fe) && s.failed.CompareAndSwap(nil, fe) {
		close(s.failedCh)
	}
}

// openPebble opens the pebble database at path, turning its panics and
// refusals into the store's errors.
func openPebble(path string, o *pebble.Options) (db *pebble.DB, err error) {
	defer recoverPebble(path, &err)
	db, err = pebble.Open(path, o)
	if err != nil {
		db = nil
		if errors.Is(err, pebble.ErrDBDoesNotExist) {
			return nil, corruptError(path, "pebble finds no MANIFEST", err)
		}
		return nil, pebbleError(path, "open", err)
	}
	return db, nil
}

// pebbleError classifies an error pebble returned about the store at path:
// the operating system's refusals are passed on as they are, and anything
// else (pebble's corruption errors, malformed or missing files) is
// ErrCorrupt.
func pebbleError(path, op string, err error) error {
	if isSystemError(err) && !pebble.IsCorruptionError(err) {
		return fmt.Errorf("store: %s %s: %w", op, path, err)
	}
	return corruptError(path, "", err)
}

// closePebble closes db after a failed check, ignoring what it says.
func closePebble(db *pebble.DB, path string) {
	var err error
	defer recoverPebble(path, &err)
	_ = db.Close()
}

// checkLayout verifies that db is a store this code can read.
func checkLayout(db *pebble.DB, path string) (err error) {
	defer recoverPebble(path, &err)
	v, closer, err := db.Get(tableMeta.key([]byte(metaVersion)))
	if errors.Is(err, pebble.ErrNotFound) {
		return corruptError(path, "no layout version: not a store", nil)
	}
	if err != nil {
		return pebbleError(path, "read", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return corruptError(path, fmt.Sprintf("layout version is %d bytes, want 8", len(v)), nil)
	}
	switch version := binary.BigEndian.Uint64(v); {
	case version == 0:
		return corruptError(path, "layout version 0", nil)
	case version > LayoutVersion:
		return &fileError{kind: ErrVersion, path: path,
			phrase: fmt.Sprintf("has layout version %d, newer than this code's %d", version, LayoutVersion)}
	}
	return nil
}

func closeErr(db *pebble.DB, path string) (err error) {
	defer recoverPebble(path, &err)
	if err := db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", path, err)
	}
	return nil
}
