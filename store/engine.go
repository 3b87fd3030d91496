package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// How the store runs pebble. Pebble is tuned for a node's small store rather
// than for a database server: little memory, few files, and a disk footprint
// that follows the live data down as well as up.
const (
	// storeFormat is pebble's on-disk format, pinned so that a pebble
	// upgrade never rewrites a store into a format older code cannot read.
	// It is at least FormatWALSyncChunks, whose WAL records carry the
	// offset synced so far: recovery can then tell a torn tail (the end of
	// the last WAL after a crash, dropped as never acknowledged) from damage
	// in the middle of a WAL (ErrCorrupt).
	storeFormat = pebble.FormatValueSeparation
	// memTableSize bounds the memtable (and so the WAL between flushes);
	// pebble keeps up to two in memory while one is flushed. A store
	// with a small cap has a smaller one (memTableFor).
	memTableSize = 4 << 20
	// minMemTableSize is the least memtable, that of a store capped at
	// 16 MiB or less.
	minMemTableSize = 256 << 10
	// cacheSize is the block cache for reads: Load and dedupe look-ups.
	// Pebble charges its memtables to the block cache (Cache.Reserve, one
	// memTableSize each, and there are two while one is flushed): the
	// cache is made that much larger, or it would hold nothing, and every
	// look-up would read and decompress its blocks from the files again.
	cacheSize = 8 << 20
	// maxOpenFiles caps pebble's file descriptors, well below a node's
	// usual limit of 1024, which its connections share.
	maxOpenFiles = 128
	// diskSlowThreshold is how long a disk operation may take before
	// pebble reports the disk as slow (logged as a warning).
	diskSlowThreshold = 5 * time.Second
)

// memTableFor is the memtable of a store capped at maxBytes: a 64th of it,
// from minMemTableSize to memTableSize. The disk pebble takes beyond the
// records (write-ahead logs preallocated to 110% of the memtable, one or
// two in use and up to three kept for reuse, and a MANIFEST) follows it:
// about 1.2 MB for a 256 KiB memtable, 17 MB for 4 MiB, as a fraction of
// the cap at most 2/5 (the least cap, 16 MiB, with messages of 1 MiB,
// which leave the logs kept for reuse at 1.1 MB each) and usually under
// a tenth.
func memTableFor(maxBytes int64) uint64 {
	return uint64(min(max(maxBytes/64, minMemTableSize), memTableSize))
}

// pebbleHooks are what the store does with what pebble reports, beyond
// logging it, and the sizes that follow its cap.
type pebbleHooks struct {
	// memTable is the memtable's size (memTableFor); 0: memTableSize.
	memTable uint64
	// fatal records a Logger.Fatalf on the store; may be nil.
	fatal func(error)
	// background runs after a background error (a failed flush or
	// compaction) is logged; may be nil.
	background func(error)
	// flushFailed runs after a flush failed; may be nil.
	flushFailed func(error)
	// limit rate-limits pebble's error lines; nil: one of its own.
	limit *logLimiter
}

// pebbleOptions returns the options every pebble open of a store uses. fs is
// the file system, with disk health checks, that the caller closes after the
// database; lock is the directory lock the caller holds and releases.
func pebbleOptions(log *zap.Logger, fs vfs.FS, lock *pebble.Lock, hooks pebbleHooks) *pebble.Options {
	limit := hooks.limit
	if limit == nil {
		limit = newLogLimiter(log)
	}
	lg := &pebbleLogger{log: log.WithOptions(zap.AddCallerSkip(1)), fatal: hooks.fatal, limit: limit}
	mem := hooks.memTable
	if mem == 0 {
		mem = memTableSize
	}
	o := &pebble.Options{
		FS:                 fs,
		Lock:               lock,
		FormatMajorVersion: storeFormat,
		MemTableSize:       mem,
		CacheSize:          cacheSize + 2*int64(mem),
		MaxOpenFiles:       maxOpenFiles,
		// The MANIFEST rolls over at the memtable's size, long before
		// pebble's default 128 MiB, which would count against MaxBytes.
		MaxManifestFileSize: int64(mem),
		Logger:              lg,
		EventListener: &pebble.EventListener{
			// Pebble retries a failed flush or compaction at once, and
			// reports each failure: rate-limited (loglimit.go).
			BackgroundError: func(err error) {
				limit.error("pebble background error", err)
				if hooks.background != nil {
					hooks.background(err)
				}
			},
			// Pebble's default calls Logger.Fatalf: here a damaged file
			// fails the read that met it (ErrCorrupt), and is logged.
			FlushEnd: func(info pebble.FlushInfo) {
				if info.Err != nil && hooks.flushFailed != nil {
					hooks.flushFailed(info.Err)
				}
			},
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				limit.error("pebble found corrupt data", info.Details, zap.String("file", info.Path))
			},
			DiskSlow: func(info pebble.DiskSlowInfo) {
				log.Warn("disk slow", zap.String("file", info.Path),
					zap.Stringer("op", info.OpType), zap.Duration("duration", info.Duration))
			},
		},
	}
	o.Experimental.FileCacheShards = 2
	// A received exchange is added only if absent (Batch.AddIncoming), so
	// every one costs a point look-up, which nearly always misses: a bloom
	// filter per table lets the miss skip the tables (at 10 bits a key, 1%
	// false positives) instead of seeking each level's index and data
	// blocks. Tables written before had none, and are read as before.
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return o
}

// newFS returns the file system pebble uses, with pebble's disk health checks,
// and the closer that stops their goroutine. Pebble would make its own, but
// only close it in DB.Close, not when Open fails.
func newFS(log *zap.Logger) (vfs.FS, io.Closer) {
	return vfs.WithDiskHealthChecks(vfs.Default, diskSlowThreshold, nil, func(info vfs.DiskSlowInfo) {
		log.Warn("disk slow", zap.String("file", info.Path),
			zap.Stringer("op", info.OpType), zap.Duration("duration", info.Duration))
	})
}

// pebbleLogger sends pebble's log lines to the store's logger: its chatter
// (WAL replay, format upgrades) at debug level, its errors at error level.
// Pebble calls Fatalf when it cannot go on (a failed WAL or MANIFEST write,
// a broken invariant) and expects it not to return; it returns by panicking
// with a *fatalError, which the store's guards turn into an error (and which
// marks the store failed). On one of pebble's own goroutines the panic ends
// the process, as pebble's default logger's os.Exit would, after the line
// has been logged.
type pebbleLogger struct {
	log   *zap.Logger
	fatal func(error) // records the failure on the store; may be nil
	limit *logLimiter // rate-limits Errorf's lines
}

func (l *pebbleLogger) Infof(format string, args ...any) {
	if l.log.Core().Enabled(zap.DebugLevel) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}

func (l *pebbleLogger) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if ok, held := l.limit.allow(msg); ok {
		if held > 0 {
			l.log.Error(msg, zap.Int("repeated", held))
		} else {
			l.log.Error(msg)
		}
	}
}

func (l *pebbleLogger) Fatalf(format string, args ...any) {
	err := &fatalError{msg: fmt.Sprintf(format, args...)}
	l.log.Error("fatal: " + err.msg)
	if l.fatal != nil {
		l.fatal(err)
	}
	panic(err)
}

// fatalError is a failure pebble reported through Logger.Fatalf.
type fatalError struct{ msg string }

func (e *fatalError) Error() string { return "pebble: fatal: " + e.msg }

// Is makes every error that carries a fatalError match ErrFailed: the
// commit that met it fails like every later one.
func (e *fatalError) Is(target error) bool { return target == ErrFailed }

// recoverPebble turns a panic in pebble (a damaged file it did not expect, or
// a Fatalf) into an error about the store at path: ErrCorrupt unless it was
// a fatal I/O failure. Use as: defer recoverPebble(path, &err).
func recoverPebble(path string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	var fe *fatalError
	if e, ok := r.(error); ok && errors.As(e, &fe) {
		*err = fmt.Errorf("store: %s: %w", path, fe)
		return
	}
	cause, ok := r.(error)
	if !ok {
		cause = fmt.Errorf("%v", r)
	}
	*err = corruptError(path, "", fmt.Errorf("pebble panicked: %w", cause))
}

// isSystemError tells the operating system's refusals (permissions, no space,
// no memory, too many open files, an I/O error) from complaints about the
// store's content. A file that a MANIFEST names but that does not exist is
// content: the store lost it.
func isSystemError(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case syscall.EACCES, syscall.EPERM, syscall.ENOSPC, syscall.EDQUOT, syscall.ENOMEM,
		syscall.EMFILE, syscall.ENFILE, syscall.EIO, syscall.EROFS, syscall.EBUSY,
		syscall.EINTR, syscall.EAGAIN, syscall.ENOTDIR, syscall.ELOOP, syscall.ENAMETOOLONG:
		return true
	}
	return false
}

// The store's locks. Pebble locks a database directory with a POSIX record
// lock (fcntl F_SETLK) on its LOCK file. Such a lock keeps other processes
// out, but not this one: the process owns the lock, and any close of the
// file by the process drops it. Pebble guards against a second lock in the
// process with a table of LOCK file names, which the same directory reached
// by another path (relative, through a symlink) slips past. So the store
// first takes a lock of its own in the process, keyed by the directory's
// identity (os.SameFile), then pebble's.

var held struct {
	mu   sync.Mutex
	dirs []os.FileInfo
}

// errBusy means a lock is held by someone else: another process or another
// Open in this one. Open retries until Options.LockTimeout.
var errBusy = errors.New("lock held elsewhere")

// dirLock is a held lock on a directory: in the process and pebble's.
type dirLock struct {
	fi     os.FileInfo
	pebble *pebble.Lock
}

// lockDir locks directory dir, which must exist. It fails with errBusy if
// another Open holds it, in this process or another. With readOnly, the
// lock in other processes is a shared one (readLock), which writes nothing.
func lockDir(dir string, readOnly bool) (*dirLock, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	held.mu.Lock()
	for _, h := range held.dirs {
		if os.SameFile(h, fi) {
			held.mu.Unlock()
			return nil, errBusy
		}
	}
	held.dirs = append(held.dirs, fi)
	held.mu.Unlock()
	l := &dirLock{fi: fi}
	var lockFS vfs.FS = vfs.Default
	if readOnly {
		lockFS = readLockFS{vfs.Default}
	}
	pl, err := pebble.LockDirectory(dir, lockFS)
	if err != nil {
		l.unhold()
		if isLockConflict(err) {
			return nil, errBusy
		}
		return nil, err
	}
	l.pebble = pl
	return l, nil
}

// readLockFS is a file system whose locks are readLock's.
type readLockFS struct{ vfs.FS }

func (readLockFS) Lock(name string) (io.Closer, error) { return readLock(name) }

// isLockConflict tells pebble's "someone holds the lock" from a failure to
// create the LOCK file. fcntl reports a held lock as EAGAIN or EACCES with
// no path; pebble reports its own table's hit as "lock held by current
// process", which the in-process lock normally answers first.
func isLockConflict(err error) bool {
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		return false // creating or opening LOCK failed: not a conflict
	}
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
		return true
	}
	return err.Error() == "lock held by current process"
}

// release drops both locks. Pebble's must only be released once a database
// opened with it has been closed.
func (l *dirLock) release() {
	if l.pebble != nil {
		_ = l.pebble.Close()
		l.pebble = nil
	}
	l.unhold()
}

func (l *dirLock) unhold() {
	held.mu.Lock()
	defer held.mu.Unlock()
	for i, h := range held.dirs {
		if h == l.fi {
			held.dirs = append(held.dirs[:i], held.dirs[i+1:]...)
			return
		}
	}
}
