package handler

import (
	"context"
	"fmt"
	"time"

	pool "github.com/libp2p/go-buffer-pool"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// exchange is one exchange's state machine. Only the loop touches it.
type exchange struct {
	id    ExchangeID
	p     *peerState
	role  Role
	kind  Kind
	state State
	start time.Time
	tm    timerEntry // its one deadline, of kind due: in the timers' heap while armed
	due   deadline

	addr  ma.Multiaddr   // where to dial; nil for a connected peer
	extra []ma.Multiaddr // more addresses from the Resolver
	wire  []byte         // the envelope this side sends: request, message or reply

	replyBy  time.Time // a dialed request's reply deadline, set by its first ack
	attempts int       // sends of wire so far
	// recorded is the attempt count the outbox record holds (a dialer's,
	// with a Store): a send past it writes the count (transmit).
	recorded   int
	msgID      uint64 // the p2p message in flight, 0 when none
	sentOK     bool   // a send of wire was acked OK
	reResolved bool   // the Resolver was asked again after a failed dial
	lookups    int    // the Resolver's failed answers
	lastReason Reason // why the last send failed, for the Outcome
	lastErr    error

	msg     []byte     // a dialer's payload, for its outbox record (with a Store)
	tag     string     // the caller's WithTag label
	resumed bool       // taken from the store at start
	origin  p2p.Origin // where a responder's request came from: the reply goes back there
	replied bool       // a reply completed this dialed request: replyData
	// replyAccepted: our node took a reply to this dialed request (accept:
	// acked OK, delivered or held by overflow) that the loop has not seen
	// yet, since the deadline last looked.
	replyAccepted bool
	// replyData is the reply's payload, handed out in reply.
	replyData []byte
	// askedAgain: a responder's request came again while its reply was on
	// its way (onRequest). The reply left by the request's old stream, or
	// by whatever stream the peer had if that one was gone; a refusal
	// unknown_exchange then means it reached another process with the
	// peer's key, and the dialer, which has asked again already, will not
	// ask once more: park sends the reply at once instead.
	askedAgain bool
	// holding: a responder's exchange counted in its peer's held, for
	// holds bytes (hold).
	holding bool
	holds   int
	// replay: a responder's exchange that only sends a stored reply
	// again, for a resend of a request answered before (onRequest). The
	// request's own exchange had its Outcome when it ended, in this life
	// or an earlier one, so a replay's end gives none and is not counted.
	replay bool
	// claim is how far Response has gone with a responder's request while
	// it is pending; pending.mu guards it, not the handler's mu.
	claim claimState

	// The events the application gets of this exchange live in its state,
	// so that handing one out allocates nothing (Event): the responder's
	// request, the dialer's reply, either side's outcome. Each is filled in
	// just before it is handed out and is the application's from then on:
	// the handler never reads or writes it again.
	request Request
	reply   Reply
	outcome Outcome
}

func (ex *exchange) ended() bool { return ex.state == StateDone || ex.state == StateFailed }

// deadline is what an exchange's timer does when it fires.
type deadline uint8

const (
	dueReply  deadline = iota + 1 // a dialed request's reply is late
	dueResend                     // a backoff is over: send again
	dueParked                     // a parked reply's dialer never came back
	dueAnswer                     // the application did not answer a request
)

// setTimer arms ex's one deadline, replacing the one armed before. The
// entry lives in the exchange, and what to do is a kind rather than a
// closure: arming it allocates nothing.
func (h *Handler) setTimer(ex *exchange, d time.Duration, due deadline) {
	ex.tm.ex, ex.due = ex, due
	h.timers.schedule(&ex.tm, d)
}

// stopTimer disarms ex's deadline, if armed.
func (h *Handler) stopTimer(ex *exchange) { h.timers.cancel(&ex.tm) }

// exchangeDue runs the deadline of ex that fired.
func (h *Handler) exchangeDue(ex *exchange) {
	switch ex.due {
	case dueReply:
		h.replyLate(ex)
	case dueResend:
		if ex.role == Dialer {
			h.begin(ex)
		} else {
			h.transmit(ex)
		}
	case dueParked:
		h.end(ex, ex.lastReason, ex.lastErr)
	case dueAnswer:
		h.end(ex, ReasonReplyTimeout, fmt.Errorf("%w: the application did not respond within %s", ErrReplyTimeout, h.cfg.ReplyTimeout))
	}
}

// replyLate ends a dialed request whose reply did not come in time. One
// whose reply our node has acked, but which waits for the loop (behind an
// application that fell behind, or a busy loop), is not late: ending it
// would drop a reply the peer was told we took, and leave the two sides
// with opposite Outcomes. It gets one more ReplyTimeout for the loop to
// take it, from the node's Receiver or from overflow: accept makes sure
// the node never refuses it busy.
func (h *Handler) replyLate(ex *exchange) {
	if ex.replyAccepted {
		ex.replyAccepted = false
		ex.state = StateAwaitReply
		h.setTimer(ex, h.cfg.ReplyTimeout, dueReply)
		return
	}
	h.end(ex, ReasonReplyTimeout, fmt.Errorf("%w: none within %s", ErrReplyTimeout, h.cfg.ReplyTimeout))
}

// submit takes a new dialed exchange: Queued, then started at once if the
// peer has room.
func (h *Handler) submit(p peer.ID, ex *exchange) {
	ps := h.peer(p)
	ex.p = ps
	ex.state = StateQueued
	if ex.addr != nil {
		h.addrs[p] = ex.addr
	}
	ps.outbound[ex.id] = ex
	if h.stopping {
		h.end(ex, ReasonClosed, ErrClosed)
		return
	}
	ps.queue.push(ex)
	h.pump(ps)
}

// begin sends a dialer's message, finding an address first when the peer is
// not connected: the one given, the cached one, or the Resolver's.
func (h *Handler) begin(ex *exchange) {
	if ex.p.conn == connDown {
		if ex.addr == nil {
			ex.addr = h.addrs[ex.p.id]
		}
		if ex.addr == nil && h.resolver != nil {
			h.resolve(ex)
			return
		}
	}
	h.transmit(ex)
}

// clearDialBackoff lets the next dial to p happen. After a failed dial
// go-libp2p refuses to dial the peer again for 5 seconds and more ("dial
// backoff"): a retry policy of its own, which would turn every resend after
// a transient failure (a redial racing the peer's close) into an instant
// failure. The handler's own backoff already spaces its dials.
func (h *Handler) clearDialBackoff(p peer.ID) {
	if s, ok := h.node.Host().Network().(*swarm.Swarm); ok {
		s.Backoff().Clear(p)
	}
}

// transmit hands the exchange's envelope to the node: Dialing when the peer
// is not connected (the node dials first), AwaitAck when it is.
func (h *Handler) transmit(ex *exchange) {
	ex.attempts++
	ex.askedAgain = false
	h.lastMsg++
	ex.msgID = h.lastMsg
	h.inflight[ex.msgID] = ex
	ex.state = StateAwaitAck
	if ex.p.conn == connDown {
		ex.state = StateDialing
		h.clearDialBackoff(ex.p.id)
		for _, a := range ex.extra {
			h.node.AddAddr(ex.p.id, a, 0)
		}
	}
	if ex.role == Dialer && ex.attempts > ex.recorded && h.durable() {
		// The count survives a restart, give or take this write. A new
		// exchange's record counts its first send already (start), so
		// that the common exchange, sent once, writes nothing here.
		ex.recorded = ex.attempts
		var b store.Batch
		b.PutOutgoing(outgoing(ex.p.id, ex))
		h.write(&b)
	}
	// An API call's message may wait in the stream's buffer for the calls
	// queued behind it (endCall).
	msg := p2p.SendMsg{Peer: ex.p.id, Addr: ex.addr, ID: ex.msgID, Channel: h.cfg.Channel, FromChannel: h.cfg.Channel,
		Data: ex.wire, LazyAck: h.lazyAck(ex), Via: ex.origin, Defer: h.inCall}
	if err := h.node.SendMessage(context.Background(), msg); err != nil {
		delete(h.inflight, ex.msgID)
		h.end(ex, ReasonClosed, ErrClosed)
		return
	}
	if h.inCall {
		h.deferred++
		if ex.role == Dialer && ex.p.started > 1 {
			h.alongside = true
		}
	}
}

// lazyAck says whether the peer's node may hold the ack of ex's envelope
// for a message of its own to carry (p2p.SendMsg.LazyAck). A request's ack
// can wait for the reply. A reply's can wait for our peer's next request
// when the connection stays; when it does not, the reply's ack is what lets
// us close it, and must come at once.
func (h *Handler) lazyAck(ex *exchange) bool {
	if ex.kind != KindRequest {
		return false
	}
	return ex.role == Dialer || h.cfg.KeepConnection
}

// onReply completes a dialed request.
func (h *Handler) onReply(from peer.ID, id ExchangeID, data []byte) {
	var ex *exchange
	if ps := h.peers[from]; ps != nil {
		ex = ps.outbound[id]
	}
	if ex == nil {
		// A resent reply to an exchange that already completed, or one
		// that ended since the node let the reply through (accept refuses
		// the others): nothing to do, and nothing wrong.
		return
	}
	if ex.kind != KindRequest {
		h.unexpected(from, fmt.Errorf("%w: reply to %s exchange %s in state %s", ErrUnexpectedMessage, ex.kind, id, ex.state))
		return
	}
	// Normally in AwaitReply; in Dialing or AwaitAck the reply overtook the
	// request's ack (it proves delivery); in Backoff or Resolving an
	// earlier send was delivered after all. Even with no send counted
	// (Queued, Resolving): a resumed exchange sent once before a restart
	// may be stored with attempts 0 (an older store, or a dead letter
	// retried on a stopped node), and a retried dead letter starts at 0,
	// yet the peer has the request. Exchange IDs are random, so only a
	// peer that received the request can name it: the reply proves a
	// send, which the Outcome counts.
	ex.replied, ex.replyData = true, data
	ex.attempts = max(ex.attempts, 1)
	h.end(ex, ReasonOK, nil)
}

// suspends reports whether ending ex for reason only suspends it, with a
// store, when Close stops it: a dialer's exchange stays in the store and
// resumes at the next start, and a request our application has not
// answered stays pending there and is delivered again; either gets its one
// Outcome in that life. claimed: Response had claimed the request when its
// exchange ended (pending.remove), and its answer is on disk (or its end
// is held until the store says whether it is), so the request is not
// delivered again.
func (h *Handler) suspends(ex *exchange, reason Reason, claimed bool) bool {
	if !h.durable() || reason != ReasonClosed {
		return false
	}
	return ex.role == Dialer || ex.kind == KindRequest && ex.wire == nil && !claimed
}

// end is every exchange's last transition: Done or Failed, one Outcome.
func (h *Handler) end(ex *exchange, reason Reason, err error) {
	if ex.ended() {
		return
	}
	stage := ex.state
	ex.state = StateFailed
	if reason == ReasonOK {
		ex.state = StateDone
	}
	h.stopTimer(ex)
	ps := ex.p
	now := time.Now() // one clock read for the end's three uses
	claimed, held := false, false
	if ex.role == Dialer {
		delete(ps.outbound, ex.id)
		if stage != StateQueued {
			ps.started--
			h.active--
		}
		if ex.kind == KindRequest && (ex.attempts > 0 || ex.replied) {
			h.done.add(ps.id, ex.id, now)
		}
	} else {
		delete(ps.inbound, ex.id)
		h.held.Add(-1)
		h.unhold(ex)
		var hold *Outcome
		if h.durable() && reason == ReasonClosed && ex.kind == KindRequest && !ex.replay {
			// A request whose reply Response is recording is answered
			// only if the store records it: its end waits for that
			// (Handler.recorded).
			hold = &ex.outcome
		}
		claimed, held = h.pending.remove(ps.id, ex.id, hold)
		h.active--
	}
	suspended := h.suspends(ex, reason, claimed)
	if ex.role != Dialer && reason == ReasonClosed && !claimed && !ex.replay {
		h.pending.closedUnanswered(ps.id, ex.id, suspended)
	}
	if ce := h.log.Check(zap.DebugLevel, "exchange ended"); ce != nil {
		ce.Write(zap.Stringer("peer", ps.id), zap.Stringer("exchange", ex.id), zap.Stringer("role", ex.role),
			zap.String("stage", string(stage)), zap.String("reason", string(reason)), zap.Error(err))
	}
	// A resumed or retried exchange's start is a stored wall-clock time,
	// so its duration is by the wall clock, and a clock set back since
	// made it negative.
	dur := max(now.Sub(ex.start), 0)
	ps.lastEnded = now
	if !suspended && !ex.replay && !held {
		// A suspended exchange is counted when it ends, in the life that
		// resumes it: counted closed here too, it would be counted twice,
		// once as a failure it never had. A replay was counted with the
		// request's exchange, and a held end is counted if it is one.
		h.metrics.ended(ex.kind, ex.role, reason, dur)
	}
	var r *Reply
	if ex.replied {
		ex.reply = Reply{From: ps.id, Exchange: ex.id, Data: ex.replyData, Tag: ex.tag}
		r = &ex.reply
	}
	ex.outcome = Outcome{
		Peer:     ps.id,
		Exchange: ex.id,
		Role:     ex.role,
		Kind:     ex.kind,
		OK:       reason == ReasonOK,
		State:    ex.state,
		Stage:    stage,
		Reason:   reason,
		Err:      err,
		Reply:    r, // the Reply handed out before it, which Close may drop
		Attempts: ex.attempts,
		Duration: dur,
		Tag:      ex.tag,
		Resumed:  ex.resumed,
	}
	o := &ex.outcome
	switch {
	case ex.role == Dialer && h.durable():
		// A close suspends the exchange: it stays in the store and
		// resumes, with its one Outcome, at the next start.
		if suspended {
			h.dur.suspended[ex.id] = true // its record is the outbox's (keepUnread)
		} else {
			h.finish(ex, o, r)
		}
	case ex.role == Dialer:
		if r != nil {
			h.deliver(r)
		}
		h.outcomes.Push(o, true)
	case suspended:
		// Pending in the store: its one Outcome comes in the life that
		// delivers it again.
	case held:
		// Its Outcome, or its suspension, waits for the store's answer
		// about its reply (Handler.recorded).
	case ex.replay:
		// The request's exchange gave its one Outcome when it ended; a
		// stored reply served again is no new end of it.
	default:
		if ex.wire == nil {
			h.unanswered(ps.id, ex.id, reason)
		}
		// A dialer's outcomes are bounded by its own calls and always
		// kept; a responder's by what peers send, so an application that
		// answers requests without reading outcomes must not grow the
		// queue forever.
		h.outcomes.Push(o, false)
	}
	h.freeWire(ex)
	// The application may keep this exchange's events, and the state
	// they live in with them: nothing else of it is needed any more, the
	// stream its request came on least of all.
	ex.wire, ex.msg, ex.origin, ex.addr, ex.extra = nil, nil, p2p.Origin{}, nil, nil
	theirsLast := reason == ReasonOK && ex.role == Dialer && ex.kind == KindRequest
	h.settle(ps, theirsLast)
}

// freeWire puts the envelope of an ephemeral exchange back in the pool it
// came from (encode) when nothing can read it any more: the exchange is
// done, after one send, which the peer acked, and whose Status came, so
// the node has finished writing it (p2p.SendMsg.Data). Any other envelope
// is left to the garbage collector: an earlier send that failed may still
// be unwinding in the node, and a durable handler's store may hold it.
func (h *Handler) freeWire(ex *exchange) {
	if ex.state != StateDone || ex.attempts != 1 || !ex.sentOK || ex.msgID != 0 || h.durable() ||
		ex.wire == nil || cap(ex.wire) > maxPooledEnvelope {
		return
	}
	pool.Put(ex.wire)
	ex.wire = nil
}
