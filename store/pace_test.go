package store

import (
	"errors"
	"runtime"
	"testing"
	"time"
)

func TestPacerWaitsOnlyAfterAGroup(t *testing.T) {
	p := pacer{lingerFor: lingerFor}
	p.committed(1, 5*time.Millisecond)
	if p.waits(0) {
		t.Error("after a lone batch the pacer waits; a lone writer must never be held back")
	}
	p.committed(6, 300*time.Microsecond)
	if !p.waits(5) || p.linger != 300*time.Microsecond {
		t.Errorf("after a group of 6 taking 300µs, with 5 queued: waits %v for %v, want true for 300µs", p.waits(5), p.linger)
	}
	if p.waits(6) {
		t.Error("the pacer waits although the group is as large as the last one")
	}
	p.committed(6, time.Second)
	if p.linger != maxLinger {
		t.Errorf("linger %v after a slow commit, want the cap %v", p.linger, maxLinger)
	}
}

// longLinger makes the committer wait an hour for a group to fill, so that
// a test can see whom it waits for without racing a timer.
func longLinger(time.Duration) time.Duration { return time.Hour }

// groupOf commits n batches, with ids from first on, as one group: they
// queue behind a held commit.
func groupOf(t *testing.T, s *Store, first uint64, n int) {
	t.Helper()
	release := holdCommitter(s)
	done := make(chan error, n)
	for i := range n {
		var b Batch
		b.PutOutgoing(outgoing(first + uint64(i)))
		s.CommitAsync(&b, func(err error) { done <- err })
	}
	waitQueued(t, s, n)
	release()
	for range n {
		if err := recv(t, done, "a batch of the group"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCommitterWaitsForAGroupToFill(t *testing.T) {
	s := openT(t, t.TempDir(), Options{lingerFor: longLinger})
	closeT(t, s)

	// Lone writers, one after the other: never held back, even with an
	// hour of linger.
	for i := range 3 {
		var b Batch
		b.PutOutgoing(outgoing(uint64(i + 1)))
		if err := s.Commit(&b); err != nil {
			t.Fatal(err)
		}
	}

	// After a group of 3, the next 3 batches are committed together, though
	// the first arrives alone.
	groupOf(t, s, 100, 3)
	before := s.Stats()
	done := make(chan error, 3)
	queue := func(id uint64) {
		var b Batch
		b.PutOutgoing(outgoing(id))
		s.CommitAsync(&b, func(err error) { done <- err })
	}
	queue(200)
	lingering(t, s, done)
	queue(201)
	queue(202)
	for range 3 {
		if err := recv(t, done, "a batch of the second group"); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Stats().Commits - before.Commits; got != 1 {
		t.Errorf("3 batches after a group of 3 took %d commits, want 1", got)
	}
}

func TestLingerEnds(t *testing.T) {
	// With the real linger, a smaller group is committed once it has
	// waited: nothing waits for company that never comes.
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	groupOf(t, s, 1, 8)
	var b Batch
	b.PutOutgoing(outgoing(100))
	if err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}

	// Close ends a linger at once, and commits what waits.
	s2 := openT(t, t.TempDir(), Options{lingerFor: longLinger})
	groupOf(t, s2, 1, 8)
	done := make(chan error, 1)
	var b2 Batch
	b2.PutOutgoing(outgoing(100))
	s2.CommitAsync(&b2, func(err error) { done <- err })
	closed := make(chan error, 1)
	go func() { closed <- s2.Close() }()
	if err := recv(t, closed, "Close during a linger"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the batch waiting in the linger: %v", err)
		}
	default:
		t.Fatal("Close returned before the callback of the batch waiting in the linger ran")
	}
	if err := s2.Commit(&Batch{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Close: %v, want ErrClosed", err)
	}
}

// lingering returns once s's committer waits for more batches, and fails
// the test if instead a batch was committed (done received).
func lingering(t *testing.T, s *Store, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.mu.Lock()
		want := s.want
		s.mu.Unlock()
		if want > 1 {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("the first batch after a group was committed alone (err %v), not held for the next group", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the committer neither waited for a group nor committed")
		}
		runtime.Gosched()
	}
}
