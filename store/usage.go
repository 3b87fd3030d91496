package store

import (
	"fmt"
	"time"
)

// The size cap. Before each group the committer needs the disk the store
// uses, to refuse what would grow a full store. Measuring it asks pebble for
// its metrics, which was about a tenth of the committer's CPU with 64
// exchanges in flight, so the committer measures at most every usageMaxAge
// and adds what it committed since: an estimate that runs ahead of what the
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
		n, err := s.used()
		if err != nil {
			return 0, err
		}
		u.measured, u.at, u.grown = n, time.Now(), 0
	}
	return u.measured + u.grown, nil
}

// added records that a commit added about n bytes.
func (s *Store) added(n int64) { s.usage.grown += n }

// used measures the bytes of disk the store uses: pebble's files, counting
// the write-ahead logs by their live records (pebble's WAL.Size, which the
// files' sizes lag behind) rather than by size, and leaving out the logs it
// keeps for reuse.
func (s *Store) used() (n int64, err error) {
	defer recoverPebble(s.path, &err)
	m := s.db.Metrics()
	return int64(m.DiskSpaceUsage() - m.WAL.PhysicalSize - m.WAL.ObsoletePhysicalSize + m.WAL.Size), nil
}

func (s *Store) fullError(used int64) error {
	return &fileError{kind: ErrFull, path: s.path, phrase: "is full",
		detail: fmt.Sprintf("%d bytes in use, limit %d", used, s.maxBytes)}
}
