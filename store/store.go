package store

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// DefaultMaxBytes is the size cap of a store whose Options.MaxBytes is not
// set: 1 GiB.
const DefaultMaxBytes = 1 << 30

// Options configure a Store. The zero value gives the defaults.
type Options struct {
	// MaxBytes caps the store's disk use: the disk its directory's files
	// take, as du counts it (their allocated blocks: sstables, MANIFEST,
	// OPTIONS, and the write-ahead logs whole, preallocated and kept for
	// reuse), plus what the current group of batches adds. While that is
	// at or over MaxBytes, a batch that grows the records fails with
	// ErrFull: one that puts more bytes than it deletes or replaces (by
	// more than 256, if it deletes or changes any record). The others
	// always go through (deletes, a record marked handled or updated in
	// place, one moved between tables), so the handler can always drain.
	// Deleted and overwritten records free their space once pebble
	// flushes and compacts them: a full store does so, in the background,
	// if anything was written since it last did, and a batch it would
	// refuse waits for that, up to a second for all the batches waiting
	// on one compaction (near two for one that found another running), and is refused only if the store is still full
	// then; it waits not at all when the last compaction freed less than
	// a 32nd of MaxBytes. Meanwhile the batches behind it that do not
	// grow the records go through (CommitAsync) (reclaim.go).
	//
	// Pebble's own files take part of the cap: measured, 1.2 MB for a cap
	// of 16 MiB or less (the memtable, and so each write-ahead log, is
	// smaller for a small cap: memTableFor), 3.3 MB there after messages
	// of 1 MB (the logs kept for reuse grow to hold them), 2.4 MB at 64 MiB,
	// 14 MB at 1 GiB; a cap under a few MiB leaves no room for records.
	// The cap is checked before each write, so the disk can go past it by
	// one batch and the log it opens (a few hundred KiB to 4.4 MiB), and
	// while pebble compacts, which writes the records it keeps before it
	// deletes the files they were in: compacting a store full of live
	// records (after deletes) took up to twice the cap (measured: 1.5 times
	// at 16 MiB, 1.97 at 256 MiB). Give the disk twice MaxBytes. Default
	// (0 or less): DefaultMaxBytes.
	MaxBytes int64
	// PeerID is the peer ID, in text form, of the node that uses the
	// store. A store records the peer ID of the first Open that gives one
	// (when it is created, or later for a store made without one, such as
	// by a release that did not record it), and Open refuses it with
	// ErrWrongPeer for any other: the outbox holds exchanges started by
	// that peer, which another identity must not resume. Empty: nothing is
	// checked or recorded, for tools that inspect a stopped node's store
	// without its key.
	PeerID string
	// LockTimeout is how long Open waits for another process's lock on the
	// store before failing with ErrLocked. Default (0 or less): 100ms.
	LockTimeout time.Duration
	// Logger receives open, close and commit-failure events, and pebble's
	// own log lines (its chatter at debug level; its errors at error level,
	// each kind at most once every 30 seconds, with a count of those held
	// back). Default: none.
	Logger *zap.Logger
	// ReadOnly opens an existing store to read it, writing nothing: no
	// directory or store is created, the write-ahead log is replayed in
	// memory only, and Commit fails with ErrReadOnly. It works on a full
	// disk and on a read-only file system. It fails with ErrLocked while
	// another process (or Open in this one) has the store open; another
	// process may open it read-only meanwhile, but not to write.
	ReadOnly bool

	// reclaimed, if set, runs after each reclaim with its error: tests
	// wait for one.
	reclaimed func(error)
	// reclaiming, if set, runs as each reclaim starts: tests hold a
	// reclaim back.
	reclaiming func()
	// reclaimWait is how long batches may park for a reclaim to make
	// room (reclaim.go); tests lengthen it, so that what they count does
	// not depend on the machine's load. Default: reclaimWait.
	reclaimWait time.Duration
	// tune, if set, changes the options of the read-write pebble
	// database: tests turn pebble's own compactions off.
	tune func(*pebble.Options)
	// lingerFor is how long the committer waits for a group to fill after
	// a commit that took took (pace.go); tests lengthen it to observe the
	// wait. Default: lingerFor.
	lingerFor func(took time.Duration) time.Duration
	// busy, if set, runs each time Open finds another process holding
	// the store and is about to wait: tests let go of the lock then, and
	// so know that Open waited.
	busy func()
	// wrapFS, if set, wraps the file system pebble uses: tests inject
	// errors.
	wrapFS func(vfs.FS) vfs.FS
	// diskFree, if set, replaces the file system's free space: tests
	// play a full disk.
	diskFree func(path string) (uint64, error)
	// abandonedPause is how long an open that Open abandoned waits
	// between attempts (room.go); tests shorten it. Default: a second.
	abandonedPause time.Duration
	// abandoned, if set, counts the opens that Open abandoned while they
	// run: tests wait for them.
	abandoned *sync.WaitGroup
}

func (o Options) withDefaults() Options {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
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
	if o.reclaimWait <= 0 {
		o.reclaimWait = reclaimWait
	}
	if o.abandonedPause <= 0 {
		o.abandonedPause = time.Second
	}
	return o
}

// Store is an open data directory. Its methods are safe for concurrent use.
type Store struct {
	path     string
	log      *zap.Logger
	maxBytes int64
	readOnly bool
	limit    *logLimiter // pebble's error lines
	diskFree func(path string) (uint64, error)
	tune     func(*pebble.Options) // Options.tune
	// Options.abandonedPause and abandoned (room.go).
	abandonedPause time.Duration
	abandoned      *sync.WaitGroup

	db   *pebble.DB
	lock *dirLock  // held from Open to Close
	fsc  io.Closer // stops the disk health checker of pebble's FS

	// rw guards the use of db by readers against Close; the committer and
	// the reclaimer have stopped before Close takes it.
	rw       sync.RWMutex
	dbClosed bool

	failed   atomic.Pointer[fatalError] // pebble reported it cannot go on
	failedCh chan struct{}              // closed when failed is set (Failed)

	opening atomic.Pointer[openWatch] // a read-write open under way (room.go)
	fsys    vfs.FS                    // the file system of the read-write open

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
	reclaimDue bool   // records were written or deleted since the last reclaim

	reclaimAsked <-chan struct{} // closed when the reclaim asked last has ended; nil once seen
	reclaimBy    time.Time       // until when batches may park; zero until one parks after a reclaim ended
	reclaimWait  time.Duration   // Options.reclaimWait
	endsSeen     uint64          // reclaimEnds, when the committer last looked
	parked       []pending       // batches parked for a reclaim, in queue order (reclaim.go)

	reclaimEnds atomic.Uint64 // reclaims ended
	freedLittle atomic.Bool   // the last reclaim freed less than a 32nd of the cap, or failed

	// reclaimNext is closed when the next reclaim to start has ended; nil
	// until one is asked for (askReclaim).
	reclaimMu   sync.Mutex
	reclaimNext chan struct{}

	reclaimKick   chan struct{}      // wakes the reclaimer, capacity 1
	reclaimed     func(error)        // Options.reclaimed
	reclaiming    func()             // Options.reclaiming
	reclaimCancel context.CancelFunc // stops a reclaim at Close
	reclaimDone   chan struct{}      // closed when the reclaimer has exited

	commits, batches atomic.Uint64
}

// Open opens the store in directory dir, creating dir (0700) and the store's
// directory dir/store (DirName, 0700, pebble's files inside) if needed. It
// fails with ErrLocked if another process (or another Open in this process)
// has the store open, with ErrCorrupt if dir/store is not a valid store, and
// with ErrVersion if a newer layout wrote it, and with ErrWrongPeer if it
// belongs to a peer other than opts.PeerID; those errors name the
// directory. A data directory holding a store file of the earlier bbolt
// layout (FileName) and no dir/store is refused with ErrCorrupt naming that
// file, rather than started empty beside it.
//
// Opening writes the write-ahead log's records that are not in an sstable
// yet into one (unless opts.ReadOnly). When the file system has no room for
// that, Open fails at once with an error that wraps syscall.ENOSPC and says
// how much room it needs and how much there is, rather than wait for room.
func Open(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if opts.PeerID != "" && !printable([]byte(opts.PeerID)) {
		// It could not be read back as one (checkPeer).
		return nil, fmt.Errorf("store: peer ID %q is not the text form of a peer ID", opts.PeerID)
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("store: create data directory: %w", err)
		}
	}
	path := filepath.Join(dir, DirName)
	log := opts.Logger.With(zap.String("path", path))
	s := &Store{
		path:           path,
		log:            log,
		maxBytes:       opts.MaxBytes,
		readOnly:       opts.ReadOnly,
		limit:          newLogLimiter(log.Named("pebble")),
		diskFree:       opts.diskFree,
		tune:           opts.tune,
		abandonedPause: opts.abandonedPause,
		abandoned:      opts.abandoned,
		want:           1,
		usage:          usage{maxAge: usageMaxAge},
		wake:           make(chan struct{}, 1),
		lingerFor:      opts.lingerFor,
		stopped:        make(chan struct{}),
		reclaimKick:    make(chan struct{}, 1),
		reclaimed:      opts.reclaimed,
		reclaiming:     opts.reclaiming,
		reclaimWait:    opts.reclaimWait,
		reclaimDone:    make(chan struct{}),
		failedCh:       make(chan struct{}),
	}
	created, err := s.open(opts)
	if err != nil {
		return nil, err
	}
	// An existing store may hold deleted or overwritten records not yet
	// compacted away (a crash before a reclaim): one reclaim is due if it
	// fills up.
	s.reclaimDue = !created && !s.readOnly
	if s.reclaimDue {
		if used, err := s.used(); err == nil && used >= s.maxBytes {
			s.reclaimDue = false
			s.askReclaim()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.reclaimCancel = cancel
	go s.reclaimer(ctx)
	go s.run()
	s.log.Info("store opened")
	return s, nil
}

// Path returns the store's directory, where pebble keeps its files.
func (s *Store) Path() string { return s.path }

// MaxBytes returns the store's size cap (Options.MaxBytes, or its default):
// the handler sizes its bounds on what peers may make it hold from it.
func (s *Store) MaxBytes() int64 { return s.maxBytes }

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
	s.limit.flush()
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
