package handler

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// accept is the node's Config.AcceptReady: it judges each message before the
// node acknowledges it, so that an ack never says OK for something the
// handler then rejects. A payload on the handler's channel that is not a
// valid envelope (it does not decode, its kind is unspecified or unknown,
// its exchange is 0) is refused malformed: the node charges the peer one
// malformed_message token for it, and that is all (no Error, no fault, no
// disconnection). A reply to an exchange this process does not know is
// refused with unknown_exchange: it is no misbehaviour (it answers this
// process's previous life, or another process sharing our key). With a
// store, a new request or message is written to disk first, and acked once
// it is there. A reply to a request of ours still running is taken: acked
// OK even when the node's Receiver is full (overflow.go). A resent request
// that our application left unanswered is refused unanswered: it will be
// neither delivered again nor answered, and its dialer must know that now
// rather than at its reply timeout. With Config.RepliesOnly, every request
// and message is refused busy: the tool takes nothing meant for the node
// whose key it borrows.
func (h *Handler) accept(d p2p.Data) (p2p.Reason, <-chan struct{}, func() p2p.Reason) {
	if d.Channel != h.cfg.Channel {
		return p2p.ReasonOK, nil, nil // the loop reports it
	}
	env, err := decodeEnvelope(d.Bytes)
	if err != nil || env.exchange == 0 || !knownKind(env.kind) {
		if ce := h.log.Check(zap.DebugLevel, "refused a payload that is not an envelope"); ce != nil {
			ce.Write(zap.Stringer("peer", d.From), zap.Int("size", len(d.Bytes)), zap.Error(err))
		}
		return p2p.ReasonMalformed, nil, nil
	}
	id := ExchangeID(env.exchange)
	switch env.kind {
	case pb.Kind_KIND_REPLY:
		h.mu.Lock()
		running, known := h.expectsReply(d.From, id)
		h.mu.Unlock()
		if !known {
			h.metrics.unknownExchange()
			if ce := h.log.Check(zap.DebugLevel, "reply to an unknown exchange"); ce != nil {
				ce.Write(zap.Stringer("peer", d.From), zap.Stringer("exchange", id))
			}
			return p2p.ReasonUnknownExchange, nil, nil
		}
		if running {
			// Taken (a verdict given through a wait): the node acks it
			// OK even when its Receiver is full, and hands it to
			// overflow then, as expectsReply's mark says.
			return p2p.ReasonOK, h.known, verdictOK
		}
	case pb.Kind_KIND_REQUEST, pb.Kind_KIND_MESSAGE:
		if h.cfg.RepliesOnly {
			return p2p.ReasonBusy, nil, nil
		}
		if h.durable() {
			return h.storeReceived(d.From, id, env)
		}
		// The mutex only when its answer can be no: some request is marked
		// unanswered (rare: an application that let a request time out),
		// or the handler holds as many requests, or as many bytes with
		// this one, as one peer or all together may (only then can a peer
		// be at its bounds, or the node at its own: held and heldBytes are
		// every peer's sums). Requests are
		// not rare, and every peer's stream readers would queue on it.
		//
		// Skipping it cannot deliver a resend twice. A mark is set by the
		// loop, under mu, as the request's exchange ends unanswered (end),
		// and the count is raised in the same critical section
		// (dedupe.markUnanswered): an accept that begins after the mark
		// sees the count, takes mu and refuses. One that reads 0 runs
		// before or alongside the marking, which is what taking mu first
		// would have made of it: acked OK, its request reaches the loop
		// after the exchange ended, and the dedupe record written when the
		// request was first delivered (onRequest) keeps it from the
		// application; its dialer waits out its reply timeout, as for a
		// resend that came a moment earlier. The inbox bounds are loose
		// anyway (inboxFull).
		if env.kind == pb.Kind_KIND_REQUEST &&
			(h.seen.anyUnanswered() || h.held.Load() >= int64(h.cfg.MaxInboxPerPeer) ||
				h.heldBytes.Load()+int64(len(env.payload)) > int64(min(h.cfg.MaxInboxBytesPerPeer, h.cfg.MaxInboxBytes))) {
			now := time.Now()
			h.mu.Lock()
			left := h.seen.unanswered(d.From, id, now)
			full := !left && !h.heldOrSeen(d.From, id, now) && h.inboxFull(d.From, len(env.payload))
			h.mu.Unlock()
			if left {
				return h.refuseUnanswered(d.From, id)
			}
			if full {
				return p2p.ReasonBusy, nil, nil
			}
		}
	}
	return p2p.ReasonOK, nil, nil
}

// heldOrSeen reports whether a request id from p is a resend, no new
// request: its exchange runs, or its dedupe record is kept. The caller
// holds mu.
func (h *Handler) heldOrSeen(p peer.ID, id ExchangeID, now time.Time) bool {
	if ps := h.peers[p]; ps != nil && ps.inbound[id] != nil {
		return true
	}
	return h.seen.has(p, id, now)
}

// inboxFull reports whether a new request or message of size bytes from p
// finds the peer at MaxInboxPerPeer or, holding anything, past
// MaxInboxBytesPerPeer with it, or every peer's use past MaxInboxBytes with
// it; one alone always fits, whatever its size (the node bounds that) and
// whatever the others hold, so that peers filling the node's bound cannot
// shut out one that holds nothing. A peer's use is what its exchanges keep in
// memory (hold): each request the application holds unanswered, and each
// reply awaiting the peer's ack, with their payloads; with a store, also
// what its inbox holds that no exchange counts (durableState.take): the
// requests not yet answered and the messages not yet handled, on disk.
// Without this bound a peer sending fresh requests as fast as they are
// acked, and reading our replies slowly or never, would grow our memory
// with its rate, and without the node's, as many peers doing that at once
// would grow it with their number.
//
// Without a store, counted from the exchanges the loop has started, so the
// requests a peer pipelines before the loop takes the first may pass the
// bounds by what it can have in flight (p2p's MaxInFlight per stream,
// StreamsPerPeer streams); with one, accept counts each as it is stored.
// The caller holds mu.
func (h *Handler) inboxFull(p peer.ID, size int) bool {
	u := h.inboxUse(p)
	return u.n >= h.cfg.MaxInboxPerPeer ||
		u.n > 0 && (u.bytes+size > h.cfg.MaxInboxBytesPerPeer || h.inboxTotal()+size > h.cfg.MaxInboxBytes)
}

// inboxTotal is every peer's inboxUse in bytes: what MaxInboxBytes bounds
// as they arrive. The caller holds mu.
func (h *Handler) inboxTotal() int {
	return int(h.heldBytes.Load()) + h.dur.inboxBytes
}

// inboxUse is what p holds against its inbox bounds (inboxFull). The
// caller holds mu.
func (h *Handler) inboxUse(p peer.ID) inboxUse {
	u := h.dur.inbox[p] // none without a store
	if ps := h.peers[p]; ps != nil {
		u.n += ps.held.n
		u.bytes += ps.held.bytes
	}
	return u
}

// refuseUnanswered is the verdict on a resend of a request that ended
// without our application's reply (reply timeout): delivering it again
// would break effectively-once, and acking it OK would leave its dialer
// waiting for a reply that never comes (docs/PROTOCOL.md §4.4).
func (h *Handler) refuseUnanswered(from peer.ID, id ExchangeID) (p2p.Reason, <-chan struct{}, func() p2p.Reason) {
	if ce := h.log.Check(zap.DebugLevel, "refused a resent request left unanswered"); ce != nil {
		ce.Write(zap.Stringer("peer", from), zap.Stringer("exchange", id))
	}
	return p2p.ReasonUnanswered, nil, nil
}

// knownKind reports whether k is a kind of envelope this handler takes.
func knownKind(k pb.Kind) bool {
	switch k {
	case pb.Kind_KIND_REQUEST, pb.Kind_KIND_REPLY, pb.Kind_KIND_MESSAGE:
		return true
	}
	return false
}

// expectsReply reports whether a reply to id from p is one this process
// can take (known): its exchange is running, or ended lately (a resent
// reply). A running exchange is marked: our node acks the reply OK,
// delivered or, when the Receiver is full, held by overflow (accept makes
// sure of it), so the exchange waits for the loop to take it (replyLate).
// The caller holds mu.
func (h *Handler) expectsReply(p peer.ID, id ExchangeID) (running, known bool) {
	if ps := h.peers[p]; ps != nil {
		if ex := ps.outbound[id]; ex != nil && ex.kind == KindRequest {
			ex.replyAccepted = true
			return true, true
		}
	}
	return false, h.done.has(p, id, time.Now())
}

// verdictOK is the wait of a verdict known at once to be OK.
func verdictOK() p2p.Reason { return p2p.ReasonOK }

// storeReceived writes a received request or message to the inbox, unless it is
// there already (a resend), and gives the verdict once it is on disk; its
// ready is closed then, so that the node need not wait for it to write the
// acks of the messages before (p2p.Config.AcceptReady).
func (h *Handler) storeReceived(from peer.ID, id ExchangeID, env envelope) (p2p.Reason, <-chan struct{}, func() p2p.Reason) {
	now := time.Now()
	key := inKey{from, id}
	h.mu.Lock()
	defer h.mu.Unlock()
	if env.kind == pb.Kind_KIND_REQUEST && h.seen.unanswered(from, id, now) {
		return h.refuseUnanswered(from, id)
	}
	if h.seen.has(from, id, now) || h.holds(from, id) {
		return p2p.ReasonOK, nil, nil // on disk already; the loop answers the resend
	}
	if st, ok := h.dur.storing[key]; ok {
		// A copy of one being written (a resend on another stream): OK
		// once the first is on disk, busy until then.
		if st.stored {
			return p2p.ReasonOK, nil, nil
		}
		return p2p.ReasonBusy, nil, nil
	}
	// The slot is taken here, not when the loop delivers: the messages a
	// peer pipelines are all judged before the first reaches the loop.
	if h.inboxFull(from, len(env.payload)) {
		return p2p.ReasonBusy, nil, nil
	}
	h.dur.take(key, len(env.payload))
	st := &storing{}
	h.dur.storing[key] = st
	kind := store.KindRequest
	if env.kind == pb.Kind_KIND_MESSAGE {
		kind = store.KindMessage
	}
	var b store.Batch
	b.AddIncoming(store.Incoming{Peer: string(from), ID: uint64(id), Kind: kind, State: store.InPending,
		Payload: env.payload, Received: now, Updated: now})
	var err error // the commit's, read once ready is closed
	ready := make(chan struct{})
	h.cfg.Store.CommitAsync(&b, func(e error) { err = e; close(ready) })
	return p2p.ReasonOK, ready, func() p2p.Reason {
		<-ready
		h.mu.Lock()
		defer h.mu.Unlock()
		if err != nil {
			// Refused, not lost: the sender resends.
			delete(h.dur.storing, key)
			h.dur.release(key)
			h.log.Warn("could not store a received message: answering busy", zap.Stringer("peer", from), zap.Error(err))
			return p2p.ReasonBusy
		}
		st.stored = true
		return p2p.ReasonOK
	}
}

// holds reports whether the application holds exchange id from p: a
// request it has not seen through (its exchange runs), or a message it has
// not acknowledged. A resend of one is no new arrival, even once its
// dedupe record is gone (DedupePerPeer), so it takes no second inbox slot
// and is not delivered twice. The caller holds mu.
func (h *Handler) holds(p peer.ID, id ExchangeID) bool {
	if ps := h.peers[p]; ps != nil && ps.inbound[id] != nil {
		return true
	}
	return h.dur.unacked[inKey{p, id}]
}

// storing is a received exchange being written to the inbox: counted in
// its peer's inbox (durableState.take) from then on, until the loop takes
// it (arrived).
type storing struct{ stored bool }

// arrived tells whether a request or message reaching the loop is one
// accept stored (and counted) for this process; it forgets it as storing.
// The caller holds mu.
func (h *Handler) arrived(p peer.ID, id ExchangeID) bool {
	key := inKey{p, id}
	if _, ok := h.dur.storing[key]; !ok {
		return false
	}
	delete(h.dur.storing, key)
	return true
}
