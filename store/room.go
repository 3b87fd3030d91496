package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Opening on a full disk. A read-write open writes the records of the
// write-ahead log that are not in an sstable yet into one, and returns only
// once that flush has succeeded; pebble retries a failed flush at once,
// forever, so on a full disk Open never returned (and logged every
// attempt). Two guards:
//
//   - checkRoom: before the read-write open, the file system must have
//     room for what the flush writes (measured by the read-only open that
//     verifies the store), or Open fails at once, saying how much it needs
//     and how much is free;
//   - openWritable: should a flush fail all the same (the estimate was
//     short, or another program filled the disk meanwhile), Open fails
//     with that error rather than wait. The pebble open it abandons goes on
//     in the background, trying again at most every second (Options.abandonedPause) and only
//     once the disk has the room, and when it succeeds the database is
//     closed and the store's lock released; until then the store stays
//     locked (a second Open in this process fails ErrLocked). A process
//     that exits on the error (p2pnode) leaves nothing behind.

// roomSlack is room beyond the write-ahead log's records that a read-write
// open needs: the sstable's index, filter and properties, the MANIFEST
// edit, a new OPTIONS file.
const roomSlack = 64 << 10

// roomFor is the disk a read-write open needs to replay replay bytes of
// write-ahead log records: an sstable of about their size (records compress,
// but blocks and keys add), and roomSlack.
func roomFor(replay uint64) uint64 {
	return replay + replay/8 + roomSlack
}

// freeBytes is the space the file system holding path has for this
// process: what unprivileged users may use, or for root (which ext4's
// reserved blocks are kept for) all that is free.
func (s *Store) freeBytes(fsys vfs.FS) (uint64, error) {
	if s.diskFree != nil {
		return s.diskFree(s.path)
	}
	u, err := fsys.GetDiskUsage(s.path)
	if err != nil {
		return 0, err
	}
	if os.Geteuid() == 0 && u.TotalBytes >= u.UsedBytes {
		return u.TotalBytes - u.UsedBytes, nil
	}
	return u.AvailBytes, nil
}

// checkRoom fails when the file system lacks the room to replay replay
// bytes of write-ahead log records. A file system that does not say how
// much it has free is not checked.
func (s *Store) checkRoom(fsys vfs.FS, replay uint64) error {
	if replay == 0 {
		return nil // no flush: what Open writes fails at once if it must
	}
	free, err := s.freeBytes(fsys)
	if err != nil {
		return nil
	}
	if need := roomFor(replay); free < need {
		return fmt.Errorf("store: %s cannot be opened: its write-ahead log holds %d bytes of records that opening writes into an sstable, "+
			"which needs about %d bytes of disk, and the file system has %d free: make room, and start again: %w",
			s.path, replay, need, free, syscall.ENOSPC)
	}
	return nil
}

// openWatch is a read-write open under way, which a background error (the
// flush it waits for failing) abandons.
type openWatch struct {
	need      uint64     // disk the flush needs (roomFor)
	failed    chan error // the first background error, capacity 1
	decided   chan struct{}
	abandoned bool // set before decided is closed
}

// flushFailed runs after a flush failed. Once the store is open, one
// that fails for want of disk, or on an I/O error, fails the store for
// good (Err, Failed): pebble would try it again without end, its log
// writes still going through (its logs are allocated ahead), until the
// memtables were full and every commit, and a Close waiting for one,
// stalled, while the store looked healthy. Marked failed, it says so at
// once (p2pnode stops, for its supervisor to restart it); pebble's next
// attempt then waits abandonedPause rather than spin. During Open,
// openWritable deals with it (backgroundError). A failed compaction is
// not such a failure: the writes go on without it.
func (s *Store) flushFailed(err error) {
	if s.opening.Load() != nil {
		return
	}
	if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EIO) && !errors.Is(err, syscall.EROFS) {
		return
	}
	s.fail(&fatalError{msg: "flush failed: " + err.Error()})
	time.Sleep(s.abandonedPause)
}

// backgroundError runs after pebble reported a background error. During a
// read-write open it tells openWritable, and once that has abandoned the
// open it holds pebble's retry back (it runs on the flush's goroutine,
// which waits for it): for abandonedPause, then until the file system has
// the room the flush needs.
func (s *Store) backgroundError(err error) {
	w := s.opening.Load()
	if w == nil {
		return
	}
	select {
	case w.failed <- err:
	default:
	}
	<-w.decided
	if !w.abandoned {
		return
	}
	for {
		time.Sleep(s.abandonedPause)
		if free, ferr := s.freeBytes(s.fsys); ferr != nil || free >= w.need {
			return
		}
	}
}

type opened struct {
	db  *pebble.DB
	err error
}

// openWritable opens the store's pebble database read-write. If a
// background error comes first (the flush of the write-ahead log failed,
// which pebble would retry forever while Open waits), it fails with that
// error and leaves the open running, with lock and fsc, which it releases
// once the open is over (abandoned reports this).
func (s *Store) openWritable(fsys vfs.FS, lock *dirLock, fsc io.Closer, replay uint64) (db *pebble.DB, abandonedOpen bool, err error) {
	w := &openWatch{need: roomFor(replay), failed: make(chan error, 1), decided: make(chan struct{})}
	s.fsys = fsys
	s.opening.Store(w)
	o := s.pebbleOptions(fsys, lock, false)
	if s.tune != nil {
		s.tune(o)
	}
	done := make(chan opened, 1)
	go func() {
		db, err := openPebble(s.path, o)
		done <- opened{db, err}
	}()
	select {
	case r := <-done:
		s.opening.Store(nil)
		close(w.decided)
		return r.db, false, r.err
	case bgErr := <-w.failed:
		w.abandoned = true
		close(w.decided)
		if s.abandoned != nil {
			s.abandoned.Add(1)
		}
		go func() {
			if s.abandoned != nil {
				defer s.abandoned.Done()
			}
			if r := <-done; r.db != nil {
				closePebble(r.db, s.path)
			}
			_ = fsc.Close()
			lock.release()
			s.limit.flush()
		}()
		what := "cannot be opened"
		if replay > 0 {
			what = fmt.Sprintf("cannot be opened: writing the %d bytes of records of its write-ahead log into an sstable failed", replay)
		}
		return nil, true, fmt.Errorf("store: %s %s: %w", s.path, what, bgErr)
	}
}

// logReadsFS counts the bytes pebble reads from write-ahead logs: a
// read-only open reads the logs it replays, and only those (older ones,
// kept for reuse, it does not open), up to where their records end.
type logReadsFS struct {
	vfs.FS
	n *atomic.Uint64
}

func (fs logReadsFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return logReadsFile{File: f, n: fs.n}, nil
}

type logReadsFile struct {
	vfs.File
	n *atomic.Uint64
}

func (f logReadsFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.n.Add(uint64(n))
	return n, err
}

func (f logReadsFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	f.n.Add(uint64(n))
	return n, err
}
