package store

import "time"

// Pacing the group commit. Committing whatever is queued the moment the
// previous commit ends is right for a lone writer, but under concurrency it
// settles into many small groups: each fsync holds one of the process's
// Go scheduler slots (a P) while it blocks, so the writers' other work runs
// late, fewer of them are queued when the next commit starts, the groups
// shrink and the fsyncs multiply. Measured with 64 exchanges in flight
// between two handlers in one process on 2 cores, groups fell to 3-5
// batches and throughput swung between 3,400 and 6,400 exchanges/s from one
// run to the next.
//
// So, after a group of several batches, the committer waits for company:
// it commits once as many batches are queued as the last group held, or
// once the last commit's duration has passed (capped by maxLinger),
// whichever comes first. A commit is then never held back by more than one
// commit's worth of time, which is what a batch arriving during a commit
// waits anyway. After a group of one batch (a lone writer, the common case
// at one exchange in flight) nothing is held back.

// maxLinger caps how long the committer waits for company.
const maxLinger = time.Millisecond

// lingerFor is the default pacing: wait as long as the last commit took, up
// to maxLinger.
func lingerFor(took time.Duration) time.Duration { return min(took, maxLinger) }

// pacer is the committer's memory of its last group. Only the committer
// uses it.
type pacer struct {
	lingerFor func(took time.Duration) time.Duration

	want   int           // batches worth waiting for; below 2, none
	linger time.Duration // how long to wait for them
}

// committed records a group of n batches whose commit took took.
func (p *pacer) committed(n int, took time.Duration) {
	if n < 2 {
		p.want, p.linger = 0, 0
		return
	}
	p.want, p.linger = n, p.lingerFor(took)
}

// waits reports whether the next group is worth waiting for, with queued
// batches already there.
func (p *pacer) waits(queued int) bool {
	return p.want > 1 && queued < p.want && p.linger > 0
}
