package p2p

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// deadlineStream records the read deadlines set on it.
type deadlineStream struct {
	network.Stream // nil: only SetReadDeadline is called
	set            chan time.Time
}

func (s *deadlineStream) SetReadDeadline(t time.Time) error {
	s.set <- t
	return nil
}

// The frame watch wakes a read still waiting for a frame's rest with a
// deadline in the past; when the frame came whole as the watch fired, the
// reader takes that deadline back, or the stream's next read, for the
// next frame's first byte, which may wait any time, would fail.
func TestFrameWatchTakesBackTheDeadlineOfAFrameThatCame(t *testing.T) {
	s := &deadlineStream{set: make(chan time.Time, 2)}
	st := &msgStream{s: s}
	st.watch(time.Millisecond)
	select {
	case d := <-s.set:
		if !d.Before(time.Now()) {
			t.Fatalf("the watch set the deadline %v, not one in the past", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch never fired")
	}
	st.unwatch()
	select {
	case d := <-s.set:
		if !d.IsZero() {
			t.Fatalf("the deadline left is %v, want none", d)
		}
	default:
		t.Fatal("the deadline the watch set was left on the stream")
	}

	// A frame that comes in time leaves the deadline alone.
	st.watch(time.Hour)
	st.unwatch()
	select {
	case d := <-s.set:
		t.Fatalf("a watch that did not fire set the deadline %v", d)
	default:
	}
}

// A call of the watch's timer that ran late, for a frame that came as it
// fired, finds the reader watching the next frame: that frame is not
// overdue, and its read must not fail.
func TestLateFrameWatchCallLeavesTheNextFrameAlone(t *testing.T) {
	s := &deadlineStream{set: make(chan time.Time, 2)}
	st := &msgStream{s: s}
	st.watch(time.Hour)
	st.frameOverdue() // the previous frame's callback, late
	st.unwatch()
	select {
	case d := <-s.set:
		t.Fatalf("a late call for an earlier frame set the deadline %v", d)
	default:
	}
}
