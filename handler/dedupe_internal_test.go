package handler

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestDedupeBoundsAndExpiry(t *testing.T) {
	d := newDedupe(time.Minute, 3)
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

// TestDedupeCountsUnansweredMarks: accept skips the handler's mutex while
// the count of unanswered marks is 0, so the count must follow the marks
// exactly: one per ID marked (twice is once; an ID not recorded is not
// marked), and down again as each marked ID is forgotten, by the per-peer
// cap or by the TTL. A count too low would let a resend of an unanswered
// request through; one that never falls would keep accept on the mutex.
func TestDedupeCountsUnansweredMarks(t *testing.T) {
	d := newDedupe(time.Minute, 3)
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
	d := newDedupe(time.Minute, 10)
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
