package store

import (
	"runtime"
	"sync/atomic"
	"testing"
)

func benchBatch(id uint64) *Batch {
	var b Batch
	o := outgoing(id)
	o.Payload = make([]byte, 256)
	b.PutOutgoing(o)
	return &b
}

// reportGrouping reports how many transactions (fsync rounds) each batch
// cost: 1 means no grouping, lower means shared commits.
func reportGrouping(b *testing.B, s *Store, before Stats) {
	st := s.Stats()
	if n := st.Batches - before.Batches; n > 0 {
		b.ReportMetric(float64(st.Commits-before.Commits)/float64(n), "commits/batch")
	}
}

// BenchmarkCommit is one writer: every Commit is its own transaction.
func BenchmarkCommit(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	before := s.Stats()
	var id uint64
	for b.Loop() {
		id++
		if err := s.Commit(benchBatch(id)); err != nil {
			b.Fatal(err)
		}
	}
	reportGrouping(b, s, before)
}

// BenchmarkCommitParallel is about 64 concurrent writers (RunParallel starts
// parallelism × GOMAXPROCS goroutines): they share transactions.
func BenchmarkCommitParallel(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	before := s.Stats()
	var id atomic.Uint64
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Commit(benchBatch(id.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportGrouping(b, s, before)
}
