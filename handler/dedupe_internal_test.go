package handler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestDedupeBoundsAndExpiry(t *testing.T) {
	for _, lazy := range []bool{false, true} {
		dedupeBoundsAndExpiry(t, newDedupe(time.Minute, 3, lazy))
	}
}

func dedupeBoundsAndExpiry(t *testing.T, d *dedupe) {
	now := time.Now()
	a, b := peer.ID("a"), peer.ID("b")
	for i := range 4 {
		d.add(a, ExchangeID(i+1), now)
	}
	d.add(b, 1, now)
	if d.has(a, 1, now) {
		t.Fatal("oldest of a kept past the per-peer cap")
	}
	for i := 2; i <= 4; i++ {
		if !d.has(a, ExchangeID(i), now) {
			t.Fatalf("a's %d forgotten", i)
		}
	}
	// One peer's flood does not evict another's.
	if !d.has(b, 1, now) {
		t.Fatal("b's forgotten")
	}
	later := now.Add(2 * time.Minute)
	if d.has(a, 4, later) {
		t.Fatal("kept past the TTL")
	}
	d.sweep(later)
	if len(d.peers) != 0 {
		t.Fatalf("%d peers left after the sweep", len(d.peers))
	}
}

// TestLazyDedupeIndexesOnDemand: a lazy dedupe only queues a peer's IDs
// until it is first asked about one, and from then on keeps the index it
// built up to date as IDs come and go (the cap, the TTL).
func TestLazyDedupeIndexesOnDemand(t *testing.T) {
	d := newDedupe(time.Minute, 3, true)
	now := time.Now()
	for i := range 5 {
		d.add("a", ExchangeID(i+1), now)
	}
	if s := d.peers["a"]; s.ids != nil || s.len() != 3 {
		t.Fatalf("indexed before any has, or %d IDs kept (want 3)", s.len())
	}
	if d.has("a", 2, now) || !d.has("a", 3, now) || !d.has("a", 5, now) {
		t.Fatal("wrong IDs kept past the cap")
	}
	d.add("a", 6, now.Add(time.Second)) // evicts 3
	if s := d.peers["a"]; len(s.ids) != 3 || d.has("a", 3, now) || !d.has("a", 6, now) {
		t.Fatalf("index not kept up to date: %d IDs in it", len(s.ids))
	}
	if d.has("a", 6, now.Add(2*time.Minute)) || len(d.peers) != 0 {
		t.Fatal("kept past the TTL")
	}
}

// TestDedupeCountsUnansweredMarks: accept skips the handler's mutex while
// the count of unanswered marks is 0, so the count must follow the marks
// exactly: one per ID marked (twice is once; an ID not recorded is not
// marked), and down again as each marked ID is forgotten, by the per-peer
// cap or by the TTL. A count too low would let a resend of an unanswered
// request through; one that never falls would keep accept on the mutex.
func TestDedupeCountsUnansweredMarks(t *testing.T) {
	d := newDedupe(time.Minute, 3, false)
	now := time.Now()
	if d.anyUnanswered() {
		t.Fatal("marks in an empty dedupe")
	}
	d.add("a", 1, now)
	d.add("a", 2, now.Add(time.Second))
	d.add("b", 1, now.Add(time.Second))
	d.markUnanswered("a", 1)
	d.markUnanswered("a", 1)
	d.markUnanswered("a", 9) // not recorded: not marked
	d.markUnanswered("b", 1)
	if n := d.marked.Load(); n != 2 || !d.unanswered("a", 1, now) || d.unanswered("a", 9, now) {
		t.Fatalf("%d marks, want 2", n)
	}
	d.add("a", 3, now.Add(time.Second))
	d.add("a", 4, now.Add(time.Second)) // a's 1 evicted by the cap
	if n := d.marked.Load(); n != 1 {
		t.Fatalf("%d marks after a's marked ID was evicted, want 1", n)
	}
	d.sweep(now.Add(2 * time.Minute)) // b's 1 expired
	if d.anyUnanswered() || len(d.peers) != 0 {
		t.Fatalf("%d marks, %d peers after the TTL", d.marked.Load(), len(d.peers))
	}
}

func TestDedupeCompacts(t *testing.T) {
	d := newDedupe(time.Minute, 10, false)
	now := time.Now()
	for i := range 10000 {
		d.add("a", ExchangeID(i+1), now)
	}
	s := d.peers["a"]
	if len(s.ids) != 10 || len(s.order)-s.head != 10 || cap(s.order) > 1000 {
		t.Fatalf("ids %d, order %d (head %d, cap %d)", len(s.ids), len(s.order), s.head, cap(s.order))
	}
}

func TestTimersOrderAndCancel(t *testing.T) {
	ts := newTimers(nil)
	defer ts.stop()
	var fired []int
	e1 := ts.after(time.Millisecond, func() { fired = append(fired, 1) })
	ts.after(2*time.Millisecond, func() { fired = append(fired, 2) })
	ts.after(0, func() { fired = append(fired, 0) })
	ts.cancel(e1)
	ts.cancel(e1) // twice: harmless
	deadline := time.After(time.Second)
	for len(fired) < 2 {
		select {
		case <-ts.C():
			ts.expire()
		case <-deadline:
			t.Fatalf("fired %v", fired)
		}
	}
	if fired[0] != 0 || fired[1] != 2 || len(ts.h) != 0 {
		t.Fatalf("fired %v, %d left", fired, len(ts.h))
	}
}

// BenchmarkDedupeAdd32 records exchange IDs round-robin over 32 peers, each
// remembering 4096 (the defaults), as a hub's loop does: eager, the seen
// set's probes of each peer's table; lazy, the done set's append
// (docs/performance.md, Stop 35).
func BenchmarkDedupeAdd32(b *testing.B) {
	peers := make([]peer.ID, 32)
	for i := range peers {
		peers[i] = peer.ID(fmt.Sprintf("peer-%02d-%s", i, strings.Repeat("x", 30)))
	}
	for _, lazy := range []bool{false, true} {
		b.Run(fmt.Sprintf("lazy=%t", lazy), func(b *testing.B) {
			d := newDedupe(time.Hour, DefaultDedupePerPeer, lazy)
			now := time.Now()
			for i := range 32 * DefaultDedupePerPeer { // full, as after a while
				d.add(peers[i%32], newExchangeID(), now)
			}
			b.ResetTimer()
			for i := range b.N {
				d.add(peers[i%32], newExchangeID(), now)
			}
		})
	}
}
