package handler

import "testing"

// TestAnsweredRingKeepsTheLastCap: a second Response says "already
// responded" for each of the last answeredCap requests answered, and only
// for those (the ring forgets the oldest), for the peer that sent it.
func TestAnsweredRingKeepsTheLastCap(t *testing.T) {
	var s pending
	for i := range answeredCap + 10 {
		s.rememberAnswered(pendingKey{"a", ExchangeID(i + 1)})
	}
	for i := range 10 {
		if s.wasAnswered(pendingKey{"a", ExchangeID(i + 1)}) {
			t.Fatalf("answered %d kept past the cap", i+1)
		}
	}
	for _, id := range []ExchangeID{11, 2000, answeredCap + 10} {
		if !s.wasAnswered(pendingKey{"a", id}) {
			t.Fatalf("answered %d forgotten", id)
		}
	}
	if s.wasAnswered(pendingKey{"b", 11}) {
		t.Fatal("answered for another peer")
	}
}

// BenchmarkAnsweredMiss is the cost a Response for a request no longer
// pending pays to learn it was never answered: a scan of the full ring
// (docs/performance.md, Stop 35).
func BenchmarkAnsweredMiss(b *testing.B) {
	var s pending
	for i := range answeredCap {
		s.rememberAnswered(pendingKey{"a", ExchangeID(i + 1)})
	}
	for b.Loop() {
		if s.wasAnswered(pendingKey{"a", 0}) {
			b.Fatal("found")
		}
	}
}
