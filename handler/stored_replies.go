package handler

// The replies of a durable handler: each answered request's reply is on
// disk before it is sent, and stays there, so that a resend of the
// request gets the same reply again, even after a restart; how long each
// is kept is bounded per peer and for the node, so that a peer cannot fill
// the store with replies it asks for.

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// storeReply records the application's reply to a received request, before
// it is sent.
func (h *Handler) storeReply(p peer.ID, id ExchangeID, msg []byte) error {
	now := time.Now()
	var b store.Batch
	b.PutIncoming(store.Incoming{Peer: string(p), ID: uint64(id), Kind: store.KindRequest, State: store.InAnswered,
		Reply: msg, Received: now, Updated: now})
	return h.commit(&b)
}

// storedReply is the envelope of the reply to a request answered before,
// read back from the store; nil when there is none. The caller holds mu.
//
// Each call is a store read under mu and a whole reply sent again for a
// resend that may be a few bytes, so a peer asking again and again for one
// answered exchange is charged: an honest dialer sends a request at most
// MaxAttempts times in a life, the first of which was answered the usual
// way, so MaxAttempts replays of one exchange cover a dialer that lost its
// reply every time and restarted once. Each replay past them costs the
// peer a protocol_violation token; it is still answered, since a dialer
// that restarts over and over may honestly need it.
func (h *Handler) storedReply(p peer.ID, id ExchangeID) []byte {
	key := inKey{p, id}
	if !h.dur.answered[key] {
		return nil
	}
	if n := h.dur.replayed[key]; n >= h.cfg.MaxAttempts {
		h.node.Charge(p, ratelimit.ProtocolViolation)
	} else {
		h.dur.replayed[key] = n + 1
	}
	in, ok, err := h.cfg.Store.Incoming(string(p), uint64(id))
	if err != nil || !ok || in.State != store.InAnswered {
		if err != nil {
			h.log.Warn("reading a stored reply", zap.Stringer("peer", p), zap.Stringer("exchange", id), zap.Error(err))
		}
		return nil
	}
	return appendEnvelope(nil, pb.Kind_KIND_REPLY, uint64(id), in.Reply)
}

// replyCount counts stored replies: how many, and their bytes.
type replyCount struct{ live, bytes int }

// storedReplies are one peer's answered requests whose reply is in the
// store, oldest first, with the bytes of those replies
// (durableState.replies).
type storedReplies struct {
	q     []inKey // oldest at head; a key no longer in replySize is stale
	head  int
	live  int // keys of q[head:] still in replySize
	bytes int
}

// add counts k's reply, of size bytes, as the newest.
func (r *storedReplies) add(k inKey, size int) {
	r.q = append(r.q, k)
	r.live++
	r.bytes += size
}

// keepReply notes that the reply to answered request k, of size bytes, is
// in the store, where it stays for a resend until the dedupe record goes
// (DedupeTTL, DedupePerPeer). A peer's stored replies are bounded by
// MaxInboxBytesPerPeer too: without it, a peer sending fresh requests as
// fast as they are answered would hold DedupePerPeer replies of up to
// MaxMessageSize on disk, 4 GiB, more than the whole store, and the full
// store would fail every peer's exchanges. Every peer's together are
// bounded by MaxInboxBytes, for as many peers doing that at once. Past a
// bound replies whose exchanges have ended are dropped (dropReply),
// oldest first: the peer's own past its bound; past the node's, those of
// the peer holding the most (trimAllReplies), so that a peer filling its
// own share cannot push out the replies of peers holding less. One still
// on its way to its peer, or parked until it is back, is kept, as is this
// newest one. The caller holds mu.
func (h *Handler) keepReply(k inKey, size int) {
	h.dur.answered[k] = true
	if _, ok := h.dur.replySize[k]; ok {
		return
	}
	size = max(size, 1)
	r := h.dur.replies[k.peer]
	if r == nil {
		r = &storedReplies{}
		h.dur.replies[k.peer] = r
	}
	h.dur.replySize[k] = size
	r.add(k, size)
	h.dur.allReplies.live++
	h.dur.allReplies.bytes += size
	h.trimReplies(r, h.cfg.MaxInboxBytesPerPeer, k)
	h.trimAllReplies(h.cfg.MaxInboxBytes, k)
}

// trimAllReplies drops stored replies whose exchanges have ended, but
// keep's, until every peer's together hold at most limit bytes: from the
// peer holding the most, down to the next one's holding, then from both,
// and so on, each peer's oldest first. Dropped oldest first whoever's
// they were, a peer sending requests as fast as they are answered, within
// its own bound, pushed out every other peer's replies, and an honest
// dialer's resend got none. A peer whose replies left are all on their
// way (or keep) is passed over. The caller holds mu.
func (h *Handler) trimAllReplies(limit int, keep inKey) {
	var spent map[*storedReplies]bool // nothing left to drop
	// Each round drops at least one reply or passes a peer over.
	for h.dur.allReplies.bytes > limit {
		var top *storedReplies
		var topID peer.ID
		next := 0 // the most any other peer holds
		for p, r := range h.dur.replies {
			switch {
			case spent[r]:
			case top == nil || r.bytes > top.bytes || r.bytes == top.bytes && p < topID:
				if top != nil {
					next = max(next, top.bytes)
				}
				top, topID = r, p
			default:
				next = max(next, r.bytes)
			}
		}
		if top == nil {
			return
		}
		had := top.bytes
		target := max(next, had-(h.dur.allReplies.bytes-limit))
		if target >= had {
			target = had - 1 // a tie: one of them goes first
		}
		h.trimReplies(top, target, keep)
		if top.bytes == had {
			if spent == nil {
				spent = make(map[*storedReplies]bool)
			}
			spent[top] = true
		}
	}
}

// trimReplies drops the oldest of one peer's replies r whose exchanges
// have ended, but keep's, until r holds at most limit bytes, or only
// replies on their way and keep; then it compacts r. The caller holds mu.
func (h *Handler) trimReplies(r *storedReplies, limit int, keep inKey) {
	// Each key is looked at once at most: one whose exchange runs goes to
	// the back, and is dropped, if need be, once it has ended.
	for n := len(r.q) - r.head; n > 0 && r.bytes > limit; n-- {
		old := r.q[r.head]
		r.q[r.head] = inKey{}
		r.head++
		switch {
		case !h.isKept(old):
			// Stale: forgotten since (unkeepReply), or dropped.
		case old == keep || h.replying(old):
			r.q = append(r.q, old)
		default:
			h.uncount(old)
			h.dropReply(old)
		}
	}
	h.compactReplies(r)
}

// isKept reports whether the reply of k is counted as stored.
func (h *Handler) isKept(k inKey) bool {
	_, ok := h.dur.replySize[k]
	return ok
}

// replying reports whether the exchange of answered request k still runs:
// its reply waits for the peer's ack, or to be sent again.
func (h *Handler) replying(k inKey) bool {
	ps := h.peers[k.peer]
	return ps != nil && ps.inbound[k.id] != nil
}

// compactReplies drops r's dead head, and its stale keys once they are
// most of it, so that it holds about its live keys whatever the peers'
// history: a peer whose replies are small never passes the bound, and
// its forgotten keys would otherwise pile up for as long as it talks.
func (h *Handler) compactReplies(r *storedReplies) {
	if len(r.q)-r.head > 2*r.live+64 {
		q := r.q[:0] // in place: each key moves down, never up
		for _, k := range r.q[r.head:] {
			if h.isKept(k) {
				q = append(q, k)
			}
		}
		clear(r.q[len(q):])
		r.q, r.head = q, 0
		return
	}
	if r.head > len(r.q)/2 {
		n := copy(r.q, r.q[r.head:])
		clear(r.q[n:])
		r.q, r.head = r.q[:n], 0
	}
}

// dropReply forgets the stored reply of answered request k and keeps only
// its dedupe record, marked answered: a resend of it is not delivered, and
// gets no reply (its dialer's reply timeout ends it), as a resend of an
// answered request does without a store. Replies go oldest first, and an
// honest dialer resends within seconds, so a dropped reply is one its
// dialer most likely has. The caller holds mu.
func (h *Handler) dropReply(k inKey) {
	delete(h.dur.answered, k)
	delete(h.dur.replayed, k)
	now := time.Now()
	var b store.Batch
	b.PutIncoming(store.Incoming{Peer: string(k.peer), ID: uint64(k.id), Kind: store.KindRequest, State: store.InHandled,
		Answered: true, Received: now, Updated: now})
	h.write(&b)
	h.metrics.replyDropped()
}

// uncount stops counting the stored reply of k, in its peer's and in every
// peer's, leaving its key in its peer's queue, stale. It returns its peer's
// queue, nil when that holds no reply any more (and is gone).
func (h *Handler) uncount(k inKey) *storedReplies {
	n, ok := h.dur.replySize[k]
	if !ok {
		return nil
	}
	delete(h.dur.replySize, k)
	h.dur.allReplies.live--
	h.dur.allReplies.bytes -= n
	r := h.dur.replies[k.peer]
	r.live--
	r.bytes -= n
	if r.live <= 0 {
		delete(h.dur.replies, k.peer)
		return nil
	}
	return r
}

// unkeepReply stops counting the stored reply of k, forgotten.
func (h *Handler) unkeepReply(k inKey) {
	if !h.isKept(k) {
		return
	}
	if r := h.uncount(k); r != nil {
		h.compactReplies(r)
	}
}
