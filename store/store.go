package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"
)

// Options configure a Store. The zero value gives the defaults.
type Options struct {
	// MaxBytes caps the data in the file. While the pages in use (the
	// file's high-water mark minus its free pages, plus what the current
	// group of batches adds) are at or over MaxBytes, a batch that adds data
	// (any Put or Add) fails with ErrFull; deletes always go through, so the
	// handler can always drain. The cap is soft: one group may overshoot it.
	// Default (0 or less): 1 GiB.
	MaxBytes int64
	// LockTimeout is how long Open waits for another process's lock on the
	// file before failing with ErrLocked. Default (0 or less): 100ms.
	LockTimeout time.Duration
	// Logger receives open, close and commit-failure events. Default: none.
	Logger *zap.Logger
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
	return o
}

// Store is an open data directory. Its methods are safe for concurrent use.
type Store struct {
	path     string
	db       *bolt.DB
	log      *zap.Logger
	maxBytes int64
	pageSize int64

	mu      sync.Mutex
	cond    *sync.Cond // signals the committer: queue grew or closing set
	queue   []pending
	closing bool
	stopped chan struct{} // closed when the committer has exited

	commits, batches atomic.Uint64
}

// Open opens the store in directory dir, creating dir (0700) and the file
// dir/store.db (0600) if needed. It fails with ErrLocked if another process
// (or another Open in this process) has the file open, with ErrCorrupt if the
// file is not a valid store, and with ErrVersion if a newer layout wrote it;
// those errors name the file.
func Open(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := openFile(path, opts)
	if err != nil {
		return nil, err
	}
	s := &Store{
		path:     path,
		db:       db,
		log:      opts.Logger.With(zap.String("path", path)),
		maxBytes: opts.MaxBytes,
		pageSize: int64(db.Info().PageSize),
		stopped:  make(chan struct{}),
	}
	s.cond = sync.NewCond(&s.mu)
	go s.run()
	s.log.Info("store opened")
	return s, nil
}

// openFile opens path, creating it if it does not exist. A file of zero
// bytes counts as absent: the store never leaves one (see create), and it
// holds nothing to lose.
func openFile(path string, opts Options) (*bolt.DB, error) {
	for range 3 {
		fi, err := os.Stat(path)
		switch {
		case err == nil && fi.Size() > 0:
			return openExisting(path, opts)
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("store: %w", err)
		}
		if err := create(path, opts); err != nil {
			return nil, err
		}
	}
	// Created, then gone again before it could be opened, three times.
	return nil, fmt.Errorf("store: %s keeps disappearing after creation", path)
}

// openBolt opens path with bbolt, turning bbolt's panics and memory faults on
// a damaged file into ErrCorrupt. After such a panic bbolt has not closed the
// file, so openBolt unlocks and closes it; the memory map bbolt may have made
// stays until the process exits (bbolt keeps no handle we could unmap).
func openBolt(path string, opts Options) (db *bolt.DB, err error) {
	var file *os.File
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if file != nil {
				releaseLock(file)
				_ = file.Close()
			}
			db, err = nil, corruptError(path, "", fmt.Errorf("bbolt panicked: %v", r))
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout: opts.LockTimeout,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, lockedError(path, nil)
	case isSystemError(err):
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	default:
		// Anything else bbolt rejects is the file's content: invalid or
		// mismatched meta pages, a bad checksum, a file too small.
		return nil, corruptError(path, "", err)
	}
}

// isSystemError tells the operating system's refusals (permissions, a
// directory in the way, no memory to map) from complaints about content.
func isSystemError(err error) bool {
	var pathErr *fs.PathError
	var errno syscall.Errno
	return errors.As(err, &pathErr) || errors.As(err, &errno)
}

func openExisting(path string, opts Options) (*bolt.DB, error) {
	db, err := openBolt(path, opts)
	if err != nil {
		return nil, err
	}
	if err := checkLayout(db, path); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// checkLayout verifies that db is a store this code can read.
func checkLayout(db *bolt.DB, path string) error {
	return view(db, path, func(tx *bolt.Tx) error {
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		// bbolt grows the file before it writes pages past its end, so a
		// file shorter than its high-water mark lost its tail.
		if fi.Size() < tx.Size() {
			return corruptError(path, fmt.Sprintf("truncated: %d bytes, pages end at %d", fi.Size(), tx.Size()), nil)
		}
		meta := tx.Bucket(bucketMeta.name())
		if meta == nil {
			return corruptError(path, "no meta bucket: not a store file", nil)
		}
		v := meta.Get([]byte(metaVersion))
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
		for _, b := range dataBuckets() {
			if tx.Bucket(b.name()) == nil {
				return corruptError(path, fmt.Sprintf("no %q bucket", b), nil)
			}
		}
		return nil
	})
}

// create makes a new store at path, for openFile to open. It builds the
// file under a temporary name and renames it into place once its layout is
// durable, so a crash while creating leaves no store.db (at most the
// temporary file), never a store.db without a layout, which Open would
// refuse as corrupt. The temporary file's lock keeps two creators apart.
func create(path string, opts Options) error {
	tmp := path + ".new"
	db, err := openBolt(tmp, opts)
	if errors.Is(err, ErrCorrupt) {
		// The leftover of a creation that crashed: records are only written
		// after the rename, so it holds nothing and can go.
		if rmErr := os.Remove(tmp); rmErr != nil {
			return fmt.Errorf("store: remove leftover: %w", rmErr)
		}
		db, err = openBolt(tmp, opts)
	}
	if errors.Is(err, ErrLocked) {
		return lockedError(path, nil) // another process is creating the store
	}
	if err != nil {
		return err
	}
	// Holding the temporary file's lock, look again: another process may
	// have created the store while this one waited for that lock.
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		_ = db.Close()
		_ = os.Remove(tmp)
		return nil
	}
	err = initLayout(db, tmp)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("store: close %s: %w", tmp, cerr)
	}
	if err != nil {
		return err
	}
	// Renamed closed rather than open, because not every system renames an
	// open file. Another creator that took the temporary file in between
	// renames it itself; either rename makes the same file the store.
	if err := os.Rename(tmp, path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// initLayout writes the buckets and the version in one transaction.
func initLayout(db *bolt.DB, path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = corruptError(path, "", fmt.Errorf("bbolt panicked: %v", r))
		}
	}()
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta.name())
		if err != nil {
			return err
		}
		if err := meta.Put([]byte(metaVersion), idKey(LayoutVersion)); err != nil {
			return err
		}
		created := []byte(time.Now().UTC().Format(time.RFC3339))
		if err := meta.Put([]byte(metaCreated), created); err != nil {
			return err
		}
		for _, b := range dataBuckets() {
			if _, err := tx.CreateBucketIfNotExists(b.name()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: initialise %s: %w", path, err)
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

// view runs fn in a read transaction of db, turning bbolt's panics and
// memory faults on a damaged file into ErrCorrupt.
func view(db *bolt.DB, path string, fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = corruptError(path, "", fmt.Errorf("reading panicked: %v", r))
		}
	}()
	err = db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return closedError(path)
	}
	return err
}

// Path returns the store file's path.
func (s *Store) Path() string { return s.path }

// Close waits for every queued batch to be committed and its callback to
// run, then closes the file. Later calls to Commit fail with ErrClosed, as
// does a second Close. Close must not be called from a CommitAsync callback.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return closedError(s.path)
	}
	s.closing = true
	s.cond.Signal()
	s.mu.Unlock()
	<-s.stopped
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	s.log.Info("store closed")
	return nil
}

// Stats counts the store's work since Open.
type Stats struct {
	// Commits is the number of transactions committed; each is one group
	// commit and one round of bbolt's fsyncs.
	Commits uint64
	// Batches is the number of batches written by those transactions.
	Batches uint64
}

// Stats returns the counts of commits and batches since Open.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Batches: s.batches.Load()}
}
