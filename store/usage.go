package store

import (
	"fmt"
	"os"
	"time"
)

// The size cap. Before each group the committer needs the disk the store
// uses, to refuse what would grow a full store. That is the disk its files
// take, as du counts it (dirUsage): every file of the directory, by the
// blocks allocated to it, which counts what pebble allocates ahead of its
// writes (each write-ahead log is preallocated to 110% of the memtable),
// the logs it keeps for reuse, and the sstables a compaction is writing.
// (Pebble's metrics, used before, counted the logs by their live records
// and left out the logs kept for reuse and the preallocation: a store
// capped at 1 MiB took 13.5 MB.) Measuring costs a directory listing, so
// the committer measures at most every usageMaxAge and adds what it
// committed since: an estimate that runs ahead of what the
// commits wrote, never behind it (what compactions write meanwhile, the
// next measurement sees, as it would have before). It measures at once when
// the estimate comes near the cap or has grown by a hundredth of it since
// the last measurement, so a small store is still measured before nearly
// every group, and a full one before every group.

// usageMaxAge is how long a measurement of the disk in use serves.
const usageMaxAge = 50 * time.Millisecond

// usage is the committer's account of the disk the store uses.
type usage struct {
	measured int64         // bytes in use at the last measurement
	at       time.Time     // when it was taken; zero before the first
	grown    int64         // estimated bytes the commits since then added
	maxAge   time.Duration // usageMaxAge; longer in tests
}

// inUse returns the estimate of the bytes in use, measuring again when the
// last measurement is stale, or when the estimate is near the cap or has
// grown by more than a hundredth of it. Only the committer calls it.
func (s *Store) inUse() (int64, error) {
	u := &s.usage
	if u.at.IsZero() || time.Since(u.at) >= u.maxAge ||
		u.grown >= s.maxBytes/100 || u.measured+u.grown >= s.maxBytes-s.maxBytes/100 {
		return s.measure()
	}
	return u.measured + u.grown, nil
}

// measure measures the bytes in use now, for the committer, which takes
// it as the start of its estimate.
func (s *Store) measure() (int64, error) {
	n, err := s.used()
	if err != nil {
		return 0, err
	}
	u := &s.usage
	u.measured, u.at, u.grown = n, time.Now(), 0
	return n, nil
}

// added records that a commit added about n bytes.
func (s *Store) added(n int64) { s.usage.grown += n }

// DiskUsage returns the disk the store's files take, as du counts it: what
// Options.MaxBytes caps.
func (s *Store) DiskUsage() (int64, error) { return dirUsage(s.path) }

// used measures the bytes of disk the store uses (dirUsage).
func (s *Store) used() (int64, error) {
	return dirUsage(s.path)
}

func (s *Store) fullError(used int64) error {
	return &fileError{kind: ErrFull, path: s.path, phrase: "is full",
		detail: fmt.Sprintf("%d bytes in use, limit %d", used, s.maxBytes)}
}

// dirUsage is the disk the files in dir take, by their allocated blocks
// (allocated): what du says.
func dirUsage(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	var n int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue // removed since (pebble deletes obsolete files)
		}
		n += allocated(fi)
	}
	return n, nil
}
