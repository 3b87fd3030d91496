package outbox

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOrderKeptAcrossTheQueue(t *testing.T) {
	o := New[int](2, Options[int]{Limit: 10})
	defer o.Close()
	for i := 0; i < 8; i++ {
		o.Push(i, true)
	}
	for i := 0; i < 8; i++ {
		if got := <-o.C(); got != i {
			t.Fatalf("got %d, want %d", got, i)
		}
	}
}

func TestOfferRefusesWhenFullOrBehindQueue(t *testing.T) {
	o := New[int](1, Options[int]{Limit: 10})
	defer o.Close()
	if !o.Offer(1) {
		t.Fatal("offer into an empty channel refused")
	}
	if o.Offer(2) {
		t.Fatal("offer into a full channel accepted")
	}
	o.Push(3, true) // queued behind the full channel
	<-o.C()
	// Room in the channel now, but 3 is queued, or being sent (it stays
	// queued until it is in the channel), or in the channel, which it then
	// fills: an offer must not overtake it, whichever it finds.
	if o.Offer(4) {
		t.Fatal("offer accepted behind a queued event")
	}
	if v := <-o.C(); v != 3 {
		t.Fatalf("got %d, want the queued 3", v)
	}
}

func TestLimitDropsOnlyNonEssential(t *testing.T) {
	o := New[int](1, Options[int]{Limit: 2})
	defer o.Close()
	o.Push(0, false) // in the channel
	o.Push(1, false)
	o.Push(2, false)
	if n := o.Push(3, false); n != 2 {
		t.Fatalf("non-essential past the limit kept: %d queued", n)
	}
	if n := o.Push(4, true); n != 3 {
		t.Fatalf("essential dropped: %d queued", n)
	}
	for _, want := range []int{0, 1, 2, 4} {
		if got := <-o.C(); got != want {
			t.Fatalf("got %d, want %d", got, want)
		}
	}
}

func sum(last *int, ev int) bool { *last += ev; return true }

// recv fails the test instead of hanging when c stays empty (a lost event).
func recv(t *testing.T, c <-chan int) int {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received: an event was lost")
		return 0
	}
}

// The pump is started only after the pushes, so the queue's tail is
// certainly there to merge into.
func TestMergeFoldsIntoTail(t *testing.T) {
	o := newOutbox[int](1, Options[int]{Limit: 10, Merge: sum})
	o.Push(100, true) // channel
	o.Push(1, true)   // queued
	o.Push(2, true)   // merged into 1
	if n := o.Queued(); n != 1 {
		t.Fatalf("%d queued, want 1", n)
	}
	go o.pump()
	defer o.Close()
	if got := recv(t, o.C()); got != 100 {
		t.Fatal(got)
	}
	if got := recv(t, o.C()); got != 3 {
		t.Fatalf("merged %d, want 3", got)
	}
}

// An event the pump has taken to send is no longer the queue's: merging
// into it would lose what was merged.
func TestMergeSkipsTheEventBeingSent(t *testing.T) {
	o := newOutbox[int](1, Options[int]{Limit: 10, Merge: sum})
	taken := make(chan int, 1)
	o.taken = func(v int) { taken <- v }
	go o.pump()
	defer o.Close()
	o.Push(100, true) // channel
	o.Push(1, true)   // queued, then taken by the pump, blocked on the full channel
	if v := recv(t, taken); v != 1 {
		t.Fatalf("pump took %d, want 1", v)
	}
	o.Push(2, true) // not into 1: queued behind it
	o.Push(3, true) // merged into 2
	for _, want := range []int{100, 1, 5} {
		if got := recv(t, o.C()); got != want {
			t.Fatalf("got %d, want %d", got, want)
		}
		if want == 1 {
			recv(t, taken) // 5
		}
	}
}

func TestDrainedSignal(t *testing.T) {
	o := New[int](1, Options[int]{Limit: 10, LowWater: 1})
	defer o.Close()
	for i := 0; i < 4; i++ {
		o.Push(i, true)
	}
	for i := 0; i < 4; i++ {
		<-o.C()
	}
	select {
	case <-o.Drained():
	case <-time.After(5 * time.Second):
		t.Fatal("no drain signal")
	}
}

func TestCloseHandsOverWhatFitsThenCloses(t *testing.T) {
	o := New[int](2, Options[int]{Limit: 10})
	for i := 0; i < 5; i++ {
		o.Push(i, true)
	}
	o.Close()
	o.Push(9, true) // ignored, no panic
	var got []int
	for v := range o.C() {
		got = append(got, v)
	}
	if len(got) != 2 || got[0] != 0 || got[1] != 1 {
		t.Fatalf("got %v", got)
	}
	// What did not fit is the owner's to keep.
	if left := o.Left(); len(left) != 3 || left[0] != 2 || left[2] != 4 {
		t.Fatalf("left %v, want 2 3 4", left)
	}
}

// Sent tells of each event the pump moved into the channel; Push and
// Offer leave the events they put there themselves to their caller.
func TestSentOncePerPumpedEvent(t *testing.T) {
	sent := make(chan struct{}, 10)
	o := New[int](1, Options[int]{Limit: 10, Sent: func() { sent <- struct{}{} }})
	defer o.Close()
	o.Push(0, true) // straight into the channel
	for i := 1; i < 4; i++ {
		o.Push(i, true) // queued
	}
	if len(sent) != 0 {
		t.Fatalf("Sent %d times before the pump could move anything", len(sent))
	}
	for i := range 4 {
		if got := <-o.C(); got != i {
			t.Fatalf("got %d, want %d", got, i)
		}
	}
	for range 3 {
		select {
		case <-sent:
		case <-time.After(5 * time.Second):
			t.Fatal("fewer Sent than events pumped")
		}
	}
	select {
	case <-sent:
		t.Fatal("Sent more often than the pump moved events")
	case <-time.After(20 * time.Millisecond):
	}
}
