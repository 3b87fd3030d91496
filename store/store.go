package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// Options configure a Store. The zero value gives the defaults.
type Options struct {
	// MaxBytes caps the store's disk use. While the bytes in use (pebble's
	// files: sstables, MANIFEST, OPTIONS, and the write-ahead log's live
	// records, plus what the current group of batches adds) are at or over
	// MaxBytes, a batch that adds data (any Put or Add) fails with ErrFull;
	// deletes always go through, so the handler can always drain. Deleted
	// records free their space once pebble compacts them: a full store
	// that receives deletes compacts at once, in the background. The cap
	// is soft: one group may overshoot it. Write-ahead log files pebble
	// keeps for reuse (a few MiB) are not counted. Default (0 or less):
	// 1 GiB.
	MaxBytes int64
	// LockTimeout is how long Open waits for another process's lock on the
	// store before failing with ErrLocked. Default (0 or less): 100ms.
	LockTimeout time.Duration
	// Logger receives open, close and commit-failure events, and pebble's
	// own log lines (its chatter at debug level). Default: none.
	Logger *zap.Logger

	// lingerFor is how long the committer waits for a group to fill after
	// a commit that took took (pace.go); tests lengthen it to observe the
	// wait. Default: lingerFor.
	lingerFor func(took time.Duration) time.Duration
}

func (o Options) withDefaults() Options {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 30
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.lingerFor == nil {
		o.lingerFor = lingerFor
	}
	return o
}

// Store is an open data directory. Its methods are safe for concurrent use.
type Store struct {
	path     string
	log      *zap.Logger
	maxBytes int64

	db   *pebble.DB
	lock *dirLock  // held from Open to Close
	fsc  io.Closer // stops the disk health checker of pebble's FS

	// rw guards the use of db by readers against Close; the committer and
	// the reclaimer have stopped before Close takes it.
	rw       sync.RWMutex
	dbClosed bool

	failed atomic.Pointer[fatalError] // pebble reported it cannot go on

	mu      sync.Mutex
	queue   []pending
	want    int           // queue length worth waking the committer for
	wake    chan struct{} // wakes the committer, capacity 1
	closing bool
	stopped chan struct{} // closed when the committer has exited

	lingerFor func(time.Duration) time.Duration // the pacer's (Options.lingerFor)

	// Committer-only state.
	scratch    []byte // key buffer
	usage      usage  // the disk in use, for the size cap (usage.go)
	reclaimDue bool   // records were deleted since the last reclaim

	reclaimKick   chan struct{}      // wakes the reclaimer, capacity 1
	reclaimCancel context.CancelFunc // stops a reclaim at Close
	reclaimDone   chan struct{}      // closed when the reclaimer has exited

	commits, batches atomic.Uint64
}

// Open opens the store in directory dir, creating dir (0700) and the store's
// directory dir/store (DirName, 0700, pebble's files inside) if needed. It
// fails with ErrLocked if another process (or another Open in this process)
// has the store open, with ErrCorrupt if dir/store is not a valid store, and
// with ErrVersion if a newer layout wrote it; those errors name the
// directory. A data directory holding a store file of the earlier bbolt
// layout (FileName) and no dir/store is refused with ErrCorrupt naming that
// file, rather than started empty beside it.
func Open(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create data directory: %w", err)
	}
	path := filepath.Join(dir, DirName)
	s := &Store{
		path:        path,
		log:         opts.Logger.With(zap.String("path", path)),
		maxBytes:    opts.MaxBytes,
		want:        1,
		usage:       usage{maxAge: usageMaxAge},
		wake:        make(chan struct{}, 1),
		lingerFor:   opts.lingerFor,
		stopped:     make(chan struct{}),
		reclaimKick: make(chan struct{}, 1),
		reclaimDone: make(chan struct{}),
	}
	created, err := s.open(opts)
	if err != nil {
		return nil, err
	}
	// An existing store may hold deleted records not yet compacted away (a
	// crash before a reclaim): one reclaim is due if it fills up.
	s.reclaimDue = !created
	if s.reclaimDue {
		if used, err := s.used(); err == nil && used >= s.maxBytes {
			s.reclaimDue = false
			s.kickReclaim()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.reclaimCancel = cancel
	go s.reclaimer(ctx)
	go s.run()
	s.log.Info("store opened")
	return s, nil
}

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
	lock, err := lockDir(s.path)
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
	// First read-only, which changes nothing: a read-write open replays the
	// write-ahead log into sstables and deletes the files the MANIFEST does
	// not name, which a damaged MANIFEST (pebble reads one cut short as far
	// as it goes) could make the files the store's records are in.
	err = s.verify(fsys, lock)
	var db *pebble.DB
	if err == nil {
		db, err = openPebble(s.path, s.pebbleOptions(fsys, lock, false))
	}
	if err == nil {
		if err = checkLayout(db, s.path); err != nil {
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

// verify opens the store read-only and checks its layout and that every
// sstable opens (their data blocks are checked as they are read).
func (s *Store) verify(fsys vfs.FS, lock *dirLock) error {
	o := s.pebbleOptions(fsys, lock, false)
	o.ReadOnly = true
	o.FormatMajorVersion = pebble.FormatDefault // the store's own: no ratchet
	db, err := openPebble(s.path, o)
	if err != nil {
		return err
	}
	err = checkLayout(db, s.path)
	if err == nil {
		err = checkTables(db, s.path)
	}
	if cerr := closeErr(db, s.path); err == nil {
		err = cerr
	}
	return err
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
	o := pebbleOptions(s.log.Named("pebble"), fsys, lock.pebble, s.fail)
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
	if errors.As(err, &fe) {
		s.failed.CompareAndSwap(nil, fe)
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

// create makes a new store at path, for open to open, and reports whether it
// did (false: another Open created it meanwhile). It builds the store in
// path+".new" and renames that into place once its meta is durable, so a
// crash while creating leaves no store (at most the temporary directory,
// removed by the next creation), never a store without its meta, which Open
// would refuse as corrupt. The temporary directory's lock keeps two creators
// apart; one that finds it held fails with errBusy.
func create(path string, opts Options) (bool, error) {
	tmp := path + ".new"
	if fi, err := os.Lstat(tmp); err == nil && !fi.IsDir() {
		// Not something a creation leaves; nothing to keep in it either.
		if err := os.Remove(tmp); err != nil {
			return false, fmt.Errorf("store: remove leftover: %w", err)
		}
	}
	if err := os.Mkdir(tmp, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("store: %w", err)
	}
	lock, err := lockDir(tmp)
	switch {
	case errors.Is(err, errBusy):
		return false, errBusy // another Open is creating the store
	case errors.Is(err, fs.ErrNotExist):
		return false, nil // renamed into place by another creator: look again
	case err != nil:
		return false, fmt.Errorf("store: lock %s: %w", tmp, err)
	}
	defer lock.release()
	// Holding the temporary directory's lock, look again: another creator
	// may have finished while this one waited.
	if kind, err := inspect(path); err != nil || kind != kindAbsent {
		return false, nil
	}
	// The leftover of a creation that crashed holds nothing (records are
	// only written after the rename): it goes, but for the LOCK file whose
	// lock is held.
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	for _, e := range ents {
		if e.Name() != "LOCK" {
			if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
				return false, fmt.Errorf("store: remove leftover: %w", err)
			}
		}
	}
	log := opts.Logger.With(zap.String("path", tmp))
	fsys, fsc := newFS(log)
	defer fsc.Close()
	o := pebbleOptions(log.Named("pebble"), fsys, lock.pebble, nil)
	o.ErrorIfExists = true
	db, err := openPebble(tmp, o)
	if err != nil {
		return false, err
	}
	err = initLayout(db, tmp)
	if cerr := closeErr(db, tmp); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	// An empty directory at path (all inspect allows, but for a LOCK file)
	// is replaced.
	for _, p := range []string{filepath.Join(path, "LOCK"), path} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("store: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	return true, syncDir(filepath.Dir(path))
}

// initLayout writes the meta in one synced batch.
func initLayout(db *pebble.DB, path string) (err error) {
	defer recoverPebble(path, &err)
	b := db.NewBatch()
	defer b.Close()
	if err := b.Set(tableMeta.key([]byte(metaVersion)), idKey(LayoutVersion), nil); err != nil {
		return err
	}
	created := []byte(time.Now().UTC().Format(time.RFC3339))
	if err := b.Set(tableMeta.key([]byte(metaCreated)), created, nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store: initialise %s: %w", path, err)
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

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: sync directory %s: %w", dir, err)
	}
	return nil
}

// Path returns the store's directory, where pebble keeps its files.
func (s *Store) Path() string { return s.path }

// Close waits for every queued batch to be committed and its callback to
// run, then closes the store: everything committed is already synced, so
// nothing is flushed. Later calls to Commit fail with ErrClosed, as does a
// second Close. Close must not be called from a CommitAsync callback.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return closedError(s.path)
	}
	s.closing = true
	s.wakeCommitter()
	s.mu.Unlock()
	<-s.stopped
	s.reclaimCancel()
	<-s.reclaimDone

	s.rw.Lock()
	s.dbClosed = true
	err := closeErr(s.db, s.path)
	s.rw.Unlock()
	_ = s.fsc.Close()
	s.lock.release()
	if err != nil {
		return err
	}
	s.log.Info("store closed")
	return nil
}

// Stats counts the store's work since Open.
type Stats struct {
	// Commits is the number of pebble batches committed; each is one group
	// commit (rarely a part of one) and one fsync of the write-ahead log.
	Commits uint64
	// Batches is the number of batches written by those commits.
	Batches uint64
}

// Stats returns the counts of commits and batches since Open.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Batches: s.batches.Load()}
}
