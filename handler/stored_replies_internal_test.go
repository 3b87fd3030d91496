package handler

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
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

// TestStoredRepliesQueuesBoundedNodeWide: with every peer's stored replies
// past MaxInboxBytes, dropped from the peers holding the most, no peer's
// queue piles up the keys dropped or forgotten, and the counts stay the
// sums of what is kept.
func TestStoredRepliesQueuesBoundedNodeWide(t *testing.T) {
	h, _ := idle(t)
	h.cfg.Store = nopStore{}
	h.cfg.MaxInboxBytes = 10 * 100
	h.seen.perPeer = 16
	h.seen.onEvict = h.forget
	var peers []peer.ID
	for range 8 {
		peers = append(peers, tu.NewIdentity(t).ID)
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := 1; i <= 100000; i++ {
		k := inKey{peers[i%len(peers)], ExchangeID(i)}
		h.seen.add(k.peer, k.id, now)
		h.keepReply(k, 100)
	}
	all := &h.dur.allReplies
	if all.live != len(h.dur.replySize) || all.bytes != 100*all.live || all.bytes > h.cfg.MaxInboxBytes {
		t.Fatalf("all replies: %d live, %d bytes; %d kept", all.live, all.bytes, len(h.dur.replySize))
	}
	live := 0
	for p, r := range h.dur.replies {
		live += r.live
		if len(r.q)-r.head > 2*r.live+64 {
			t.Fatalf("peer %s's queue holds %d keys for %d live replies", p, len(r.q)-r.head, r.live)
		}
	}
	if live != all.live {
		t.Fatalf("the peers' queues count %d live replies, all %d", live, all.live)
	}
}
