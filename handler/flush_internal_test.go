package handler

import "testing"

// endCall leaves a call's messages for the loop (flushBell) when more
// calls are likely to follow, and flushes at once otherwise or once
// maxDeferred messages wait: the decision that lets the messages of many
// exchanges under way share a write (TestReplyLeftForTheLoopLeaves and
// TestRequestLeftForTheLoopLeaves check that the loop then flushes them).
func TestEndCallLeavesLikelyFollowedCallsToTheLoop(t *testing.T) {
	h, _ := idle(t)
	for _, tc := range []struct {
		name      string
		alongside bool  // a request to a peer with another exchange out
		unclaimed int64 // delivered requests not yet answered
		deferred  int
		left      bool
	}{
		{"alone", false, 0, 1, false},
		{"alongside another exchange", true, 0, 1, true},
		{"requests await answers", false, 2, 1, true},
		{"maxDeferred reached", true, 2, maxDeferred, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.pending.unclaimed.Store(tc.unclaimed)
			h.mu.Lock()
			h.calls.Add(1) // as apply counts the call in
			h.deferred, h.alongside = tc.deferred, tc.alongside
			h.endCall()
			deferred, alongside := h.deferred, h.alongside
			h.mu.Unlock()
			rang := false
			select {
			case <-h.flushBell:
				rang = true
			default:
			}
			if left := deferred > 0; left != tc.left || rang != tc.left {
				t.Fatalf("left for the loop: deferred %d, rang %v; want %v", deferred, rang, tc.left)
			}
			if alongside {
				t.Fatal("alongside outlived the call")
			}
			if tc.left {
				h.flushLater() // the loop's part: it flushes what was left
				left := h.deferred
				h.mu.Unlock()
				if left != 0 {
					t.Fatalf("%d messages still deferred after the loop's flush", left)
				}
			}
		})
	}
	h.pending.unclaimed.Store(0)
}
