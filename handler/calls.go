package handler

// The calls that start an exchange (Request, Send) or answer one
// (Response), and the envelope each of them puts on the wire.

import (
	"fmt"
	"math/rand/v2"
	"time"

	pool "github.com/libp2p/go-buffer-pool"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// Request sends msg to p as a request and returns the exchange's ID at
// once. The handler dials p if needed (at addr; nil means a connected peer,
// a cached address or the Resolver), queues the request behind p's
// exchanges in progress, resends it as Config allows, and delivers p's Reply
// on Events and the exchange's Outcome on Outcomes. It fails only for a
// request that cannot be sent at all: bad arguments, or a closed handler.
// The handler keeps its own copy of msg: the caller may reuse it once
// Request returns.
//
// With a Config.Store, Request returns once the exchange is on disk: a
// crash at any later moment resumes it at the next start instead of losing
// it. Its error then wraps ErrNotDurable when the store failed (store.ErrFull
// when it is full: backpressure).
func (h *Handler) Request(p peer.ID, addr ma.Multiaddr, msg []byte, opts ...CallOption) (ExchangeID, error) {
	return h.start(p, addr, msg, KindRequest, pb.Kind_KIND_REQUEST, opts)
}

// Send sends msg to p as a one-way message, acknowledged but never replied
// to: the Message-passing counterpart of Request, with the same dialing,
// queueing, resending and durability. Its Outcome reports the
// acknowledgment.
func (h *Handler) Send(p peer.ID, addr ma.Multiaddr, msg []byte, opts ...CallOption) (ExchangeID, error) {
	return h.start(p, addr, msg, KindMessage, pb.Kind_KIND_MESSAGE, opts)
}

// CallOption adjusts one Request or Send.
type CallOption func(*call)

type call struct{ tag string }

// WithTag labels the exchange with the caller's tag, which its Reply and
// Outcome carry; with a Config.Store it is stored with the exchange, so an
// application that resumes after a restart can tell its exchanges apart
// (p2pnode's stdin ids).
func WithTag(tag string) CallOption { return func(c *call) { c.tag = tag } }

func (h *Handler) start(p peer.ID, addr ma.Multiaddr, msg []byte, kind Kind, wk pb.Kind, opts []CallOption) (ExchangeID, error) {
	switch {
	case h.closing.Load():
		return 0, ErrClosed
	case p == "":
		return 0, ErrNoPeer
	case p == h.self:
		return 0, ErrSelf
	case !h.cfg.Node.Allowlist.Contains(p):
		return 0, fmt.Errorf("handler: %s: %w", p, p2p.ErrNotAllowlisted)
	}
	tpt, err := h.lastAddr.transport(p, addr)
	if err != nil {
		return 0, err
	}
	id := newExchangeID()
	wire, err := h.encode(wk, id, msg)
	if err != nil {
		return 0, err
	}
	ex := &exchange{id: id, role: Dialer, kind: kind, addr: tpt, wire: wire, start: time.Now()}
	if len(opts) > 0 {
		// Only here, so that a call without options does not allocate c.
		var c call
		for _, o := range opts {
			o(&c)
		}
		ex.tag = c.tag
	}
	if h.durable() {
		// The envelope's copy, which ends with the payload: msg is the
		// caller's, who may reuse it once we return, and the outbox
		// record is written again later (attempts, the end, a dead
		// letter) from ex.msg.
		ex.msg = wire[len(wire)-len(msg):]
		// The record counts the first send, which follows at once: the
		// count is then true without a write of its own (transmit
		// writes from the second send on). A crash before that send
		// resumes the exchange with one send counted that was not made.
		rec := outgoing(p, ex)
		rec.Attempts, ex.recorded = 1, 1
		var b store.Batch
		b.PutOutgoing(rec)
		if err := h.commit(&b); err != nil {
			return 0, err
		}
	}
	if err := h.apply(false, func() { h.submit(p, ex) }); err != nil {
		if h.durable() {
			// Never started: it must not resume either.
			var b store.Batch
			b.DeleteOutgoing(uint64(id))
			_ = h.cfg.Store.Commit(&b)
		}
		return 0, err
	}
	return id, nil
}

// Response answers the request exchange from p with msg. It fails with
// ErrUnknownExchange when no such request awaits an answer (it may have
// timed out), ErrClosed when Close ended it unanswered (with a store it is
// delivered again at the next start; so too when the store failed to
// record the reply as Close ended the request, wrapping ErrNotDurable as
// well), and ErrAlreadyResponded on a second
// call, also after the first answer's exchange has ended (for the last
// 4096 answered). With a store, a Response whose reply is recorded while
// Close ends its request returns nil, even once the handler has closed:
// the request was answered, ends "closed", and is not delivered again (a
// resend of it, in this life or the next, gets the stored reply). The exchange's
// Outcome reports whether p acknowledged the reply; a reply that crosses
// the request's timeout is dropped, and the Outcome says reply_timeout.
func (h *Handler) Response(p peer.ID, exchange ExchangeID, msg []byte) error {
	select {
	case <-h.loopDone:
		return ErrClosed
	default:
	}
	wire, err := h.encode(pb.Kind_KIND_REPLY, exchange, msg)
	if err != nil {
		return err
	}
	ex, err := h.pending.claim(p, exchange, h.durable())
	if err != nil {
		return err
	}
	if h.durable() {
		// On disk before it leaves: a resent request gets this reply
		// again, and a restart does not deliver the request again.
		closedAnswered, err := h.recorded(p, exchange, h.storeReply(p, exchange, msg))
		h.pending.doneRecording()
		if err != nil || closedAnswered {
			// Answered as Close ended the request: nothing is left to
			// send in this life (the loop has exited, or is about to),
			// and a resend of the request gets the stored reply.
			return err
		}
	}
	return h.apply(true, func() { h.respond(ex, wire) })
}

// recorded acts on the store's answer about the reply to request id from
// p (err: not recorded), and returns Response's error. A request still
// pending is answered now, or, not recorded, is the application's to
// answer again. One that Close ended meanwhile had its end held for this
// answer (end): the reply on disk, the request was answered and ends
// "closed" as Close left it (a resend gets the stored reply), and
// closedAnswered tells Response that it is done: it returns nil, though
// the handler has closed (the loop exited as Close ended the request), for
// the request is not delivered again, and an application told ErrClosed
// would wait for it at the next start forever. Not on disk, it was not
// answered: suspended like a request left unanswered, with no Outcome in
// this life, it is delivered again at the next start. Ending it "closed"
// regardless gave it a second end there.
func (h *Handler) recorded(p peer.ID, id ExchangeID, err error) (closedAnswered bool, _ error) {
	o, held := h.pending.recorded(p, id, err)
	switch {
	case !held:
		return false, err
	case err != nil:
		return false, fmt.Errorf("%w: %s from %s: its reply was not recorded, and Close ended the request meanwhile: "+
			"it is delivered again at the next start: %w", ErrClosed, id, p, err)
	}
	// end filled o in under mu, before the store answered. The loop's
	// teardown waits for this Push before it closes Outcomes
	// (waitRecordings).
	h.mu.Lock()
	defer h.mu.Unlock()
	h.metrics.ended(o.Kind, o.Role, o.Reason, o.Duration)
	h.outcomes.Push(o, false)
	return true, nil
}

func (h *Handler) encode(k pb.Kind, id ExchangeID, msg []byte) ([]byte, error) {
	size := envelopeSize(k, uint64(id), msg)
	if max := h.node.Config().MaxMessageSize; size > max {
		return nil, fmt.Errorf("%w: %d bytes with its envelope, the limit is %d", ErrTooLarge, size, max)
	}
	var buf []byte
	if h.durable() || size > maxPooledEnvelope {
		buf = make([]byte, 0, size)
	} else {
		// From the pool that go-libp2p's yamux and Noise share: an
		// ephemeral exchange done after one acked send puts it back
		// (freeWire).
		buf = pool.Get(size)[:0]
	}
	return appendEnvelope(buf, k, uint64(id), msg), nil
}

// maxPooledEnvelope bounds the envelopes taken from the pool. The pool
// rounds sizes up to a power of two, which costs little on the small
// messages most exchanges carry, where an allocation saved matters, and
// up to twice the bytes on a large one waiting in a queue, where it does
// not.
const maxPooledEnvelope = 64 << 10

// newExchangeID draws a random non-zero ID. Random rather than counted, so
// that a restarted dialer never reuses an ID its peers still remember.
func newExchangeID() ExchangeID {
	for {
		if id := rand.Uint64(); id != 0 {
			return ExchangeID(id)
		}
	}
}
