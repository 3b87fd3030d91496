package outbox

import "testing"

// A queue that never empties (a caller always a little behind; the
// handler's producer pausing at Limit and resuming at LowWater keeps it
// between the two under sustained load) must not grow its backing array
// with every event that ever passed through it: Limit bounds what is
// queued, and so must bound the memory.
func TestQueueThatNeverEmptiesStaysBounded(t *testing.T) {
	const limit, events = 8, 20000
	o := newOutbox[int](1, Options[int]{Limit: limit})
	taken := make(chan int, 1)
	o.taken = func(v int) { taken <- v }
	go o.pump()
	defer o.Close()

	o.Push(0, true) // into the channel
	o.Push(1, true) // queued; the pump takes it and waits on the full channel
	recv(t, taken)
	for i := 2; i < events; i++ {
		o.Push(i, true) // queued behind the event being sent
		if got := recv(t, o.C()); got != i-2 {
			t.Fatalf("got %d, want %d", got, i-2)
		}
		// The pump has sent i-1 and taken i: one event still queued.
		if got := recv(t, taken); got != i {
			t.Fatalf("pump took %d, want %d", got, i)
		}
	}
	o.mu.Lock()
	n, c := len(o.q), cap(o.q)
	o.mu.Unlock()
	if c > 4*limit {
		t.Fatalf("%d events queued at most, but the queue's slice has len %d, cap %d", 2, n, c)
	}
}
