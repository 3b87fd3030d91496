package handler

import (
	"testing"
	"time"
)

// TestStoredRepliesQueueBounded: the keys of a peer's stored replies that the
// dedupe forgot (DedupePerPeer, DedupeTTL) do not pile up in its queue: with
// replies well under MaxInboxBytesPerPeer nothing is dropped, and the queue
// held every key the peer ever had answered.
func TestStoredRepliesQueueBounded(t *testing.T) {
	h, other := idle(t)
	h.cfg.Store = nopStore{}
	h.seen.perPeer = 16
	h.seen.onEvict = h.forget
	p := other.ID
	now := time.Now()
	h.mu.Lock()
	for i := 1; i <= 100000; i++ {
		id := ExchangeID(i)
		h.seen.add(p, id, now)
		h.keepReply(inKey{p, id}, 100)
	}
	r := h.dur.replies[p]
	live := len(h.dur.replySize)
	h.mu.Unlock()
	t.Logf("live replies %d, bytes %d, queue len %d (head %d)", live, r.bytes, len(r.q), r.head)
	if len(r.q)-r.head > 4*live+64 {
		t.Fatalf("storedReplies.q holds %d keys for %d live replies", len(r.q)-r.head, live)
	}
}
