package store

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// ts returns a time as the store reads times back (unix nanoseconds, local
// zone, no monotonic reading), so records compare with reflect.DeepEqual.
func ts(sec int64) time.Time { return time.Unix(sec, 123456789) }

func outgoing(id uint64) Outgoing {
	return Outgoing{
		ID:       id,
		Peer:     "16Uiu2HAmPeerOne",
		Kind:     KindRequest,
		Addr:     "/ip4/127.0.0.1/tcp/4001",
		Payload:  []byte(fmt.Sprintf("payload %d", id)),
		Tag:      fmt.Sprintf("tag-%d", id),
		Attempts: 2,
		Created:  ts(1_700_000_000 + int64(id)),
	}
}

func incoming(peer string, id uint64) Incoming {
	return Incoming{
		Peer:     peer,
		ID:       id,
		Kind:     KindMessage,
		State:    InPending,
		Payload:  []byte(fmt.Sprintf("from %s #%d", peer, id)),
		Received: ts(1_700_000_100),
		Updated:  ts(1_700_000_100),
	}
}

func deadLetter(id uint64) DeadLetter {
	return DeadLetter{
		Outgoing: outgoing(id),
		Reason:   "reply_timeout",
		Error:    "no reply in 30s",
		Failed:   ts(1_700_000_200),
	}
}

func openT(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// closeT closes s at the end of the test unless the test closed it itself.
func closeT(t *testing.T, s *Store) {
	t.Helper()
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
}

func commitT(t *testing.T, s *Store, fill func(b *Batch)) {
	t.Helper()
	var b Batch
	fill(&b)
	if err := s.Commit(&b); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func loadT(t *testing.T, s *Store) State {
	t.Helper()
	st, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return st
}

// holdCommitter parks the committer in the callback of an empty batch until
// release is called. Batches queued meanwhile are all committed together as
// the next group, which makes grouping deterministic in tests.
func holdCommitter(s *Store) (release func()) {
	held := make(chan struct{})
	gate := make(chan struct{})
	s.CommitAsync(&Batch{}, func(error) {
		close(held)
		<-gate
	})
	<-held
	return func() { close(gate) }
}

// waitQueued returns once n batches wait in s's queue.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.mu.Lock()
		queued := len(s.queue)
		s.mu.Unlock()
		if queued >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d batches queued, want %d", queued, n)
		}
		runtime.Gosched()
	}
}

// recv waits for a value on ch; the deadline only keeps a broken store from
// hanging the run, it is not a speed assertion.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// quietLogger keeps pebble opened directly by a test from logging to stderr.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(string, ...any)          {}
func (quietLogger) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }
