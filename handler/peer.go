package handler

import (
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// connState is the handler's view of its connection to a peer.
type connState uint8

const (
	// connDown: no connection; the next send dials.
	connDown connState = iota
	// connUp: connected; exchanges may start on the connection.
	connUp
	// connLinger: the last exchange completed with our receipt of the
	// reply; the responder, which learns last that it completed, is
	// expected to close. New exchanges wait for the close.
	connLinger
	// connClosing: DisconnectFrom was sent; new exchanges wait for the
	// Disconnected event.
	connClosing
)

func (c connState) String() string {
	return [...]string{"disconnected", "connected", "lingering", "closing"}[c]
}

// peerState is everything the handler tracks about one peer. It exists
// while the peer is connected or has exchanges, queued or active.
type peerState struct {
	id       peer.ID
	conn     connState
	outbound map[ExchangeID]*exchange // dialed by us: queued and active
	started  int                      // outbound exchanges out of the queue
	queue    fifo                     // outbound exchanges waiting their turn
	inbound  map[ExchangeID]*exchange // requests received, not yet ended
	timer    *timerEntry              // idle, linger or closing check
	// reused: the peer started an exchange while we were closing, on a
	// connection opened meanwhile (see disconnectCheckIn).
	reused bool
	// spent: in automatic mode, an exchange ended on the current
	// connection. The peer may close it the moment its own last exchange
	// ends, which it may learn (from our node's ack) before our handler
	// does: a new exchange of ours starts on it only while the peer is
	// sure to keep it (startable).
	spent bool
	// held is what the inbound exchanges keep in memory that the store's
	// inbox does not count (hold), against the peer's inbox bounds.
	held inboxUse
	// lastEnded is when its last exchange ended, for Snapshot; kept in
	// Handler.lastEnded once the peer is forgotten (gc).
	lastEnded time.Time
}

func (h *Handler) peer(p peer.ID) *peerState {
	ps := h.peers[p]
	if ps == nil {
		ps = &peerState{
			id:       p,
			outbound: make(map[ExchangeID]*exchange),
			inbound:  make(map[ExchangeID]*exchange),
		}
		h.peers[p] = ps
	}
	return ps
}

// busy is how many exchanges with the peer are active, in either role.
func (ps *peerState) busy() int { return ps.started + len(ps.inbound) }

// exchanges lists the peer's active exchanges, in either role.
func (ps *peerState) exchanges() []*exchange {
	var out []*exchange
	for _, ex := range ps.outbound {
		if ex.state != StateQueued {
			out = append(out, ex)
		}
	}
	for _, ex := range ps.inbound {
		out = append(out, ex)
	}
	return out
}

// gc forgets a peer with nothing going on.
func (h *Handler) gc(ps *peerState) {
	if ps.conn == connDown && len(ps.outbound) == 0 && len(ps.inbound) == 0 && ps.timer == nil {
		if !ps.lastEnded.IsZero() {
			h.noteEnded(ps.id, ps.lastEnded)
		}
		delete(h.peers, ps.id)
	}
}

func (h *Handler) setPeerTimer(ps *peerState, e *timerEntry) {
	h.timers.cancel(ps.timer)
	ps.timer = e
}

// pump starts queued exchanges while the peer has room for them: fewer
// than MaxConcurrentPerPeer active, and a connection that is not being
// closed (one that is gets replaced by a fresh one once it is gone).
// Nothing starts once Close is called, before the loop has taken its
// command too: an input the loop takes first would otherwise start an
// exchange that Close then waits for until its deadline.
func (h *Handler) pump(ps *peerState) {
	for ps.queue.len() > 0 && ps.started < h.cfg.MaxConcurrentPerPeer && !h.stopping && !h.closing.Load() && ps.startable() {
		ex := ps.queue.pop()
		if ex.ended() {
			continue // completed while queued: a reply to a resumed request
		}
		ps.started++
		h.active++
		if ps.conn == connUp {
			h.setPeerTimer(ps, nil) // no longer idle
		}
		h.begin(ex)
	}
}

// startable reports whether a queued exchange may start now: on a new
// connection (dialing one), or on the current one unless it is spent. A
// spent connection still takes one while a request of the peer's awaits
// our reply: the peer keeps the connection for it, and learns of the new
// exchange before its own ends (the reply is sent after the new request;
// should it overtake it on another stream, the peer, which had the last
// word, lingers). Otherwise queued exchanges wait for the connection to
// close and dial a fresh one.
func (ps *peerState) startable() bool {
	switch ps.conn {
	case connDown:
		return true
	case connUp:
		if !ps.spent {
			return true
		}
		for _, ex := range ps.inbound {
			if ex.state == StateDelivered {
				return true
			}
		}
	}
	return false
}

// settle decides what becomes of a peer's connection after one of its
// exchanges ended. theirsLast says the peer sent the exchange's last
// message (a reply we received), so the peer's node may still be waiting for
// our node's ack of it.
func (h *Handler) settle(ps *peerState, theirsLast bool) {
	if !h.cfg.KeepConnection && (ps.conn == connUp || ps.conn == connClosing && ps.reused) {
		// A connection that relaying needs stays, as with KeepConnection;
		// the peer, which relays with us, keeps it too, so it is not spent
		// (nor left spent by an exchange that ended before relaying began:
		// the exchanges queued behind it would wait for a close that does
		// not come). Asked only here, where the answer matters: settle
		// runs after every exchange.
		if h.relaying(ps) {
			ps.spent = false
		} else {
			if ps.conn == connUp {
				ps.spent = true
			}
			// Automatic disconnection: one exchange per connection. A
			// peer that reused a connection while we were closing is
			// closed again.
			if ps.busy() == 0 {
				if theirsLast {
					h.linger(ps)
				} else {
					h.disconnect(ps, time.Now())
				}
			}
		}
	}
	h.pump(ps)
	h.idle(ps)
	h.gc(ps)
}

// idle arms the idle timer of a connected peer with no exchange.
func (h *Handler) idle(ps *peerState) {
	if ps.conn != connUp || ps.busy() > 0 || h.cfg.IdleTimeout < 0 || ps.timer != nil {
		return
	}
	since := time.Now()
	ps.timer = h.timers.after(h.cfg.IdleTimeout, func() {
		ps.timer = nil
		if ps.conn != connUp || ps.busy() > 0 {
			return
		}
		if h.relaying(ps) {
			// Idle, but closing it would cut a reservation or a circuit.
			// Both end by themselves, unannounced: look again later. Not
			// spent meanwhile: exchanges may use it.
			h.log.Debug("idle timeout: kept for relaying", zap.Stringer("peer", ps.id))
			ps.spent = false
			h.pump(ps)
			h.idle(ps)
			return
		}
		h.log.Debug("idle timeout: disconnecting", zap.Stringer("peer", ps.id))
		h.disconnect(ps, since)
	})
}

// relaying reports whether the peer's connections serve relaying (a
// reservation either way, or a circuit over them: p2p.Node.Relaying):
// closing them for idleness or after an exchange would make a member behind
// NAT unreachable through its relay until it reserved again, and cut the
// circuits.
func (h *Handler) relaying(ps *peerState) bool { return h.node.Relaying(ps.id) }

// linger waits for the peer to close, and closes after Config.Linger if it
// does not.
func (h *Handler) linger(ps *peerState) {
	ps.conn = connLinger
	since := time.Now()
	h.setPeerTimer(ps, h.timers.after(h.cfg.Linger, func() {
		ps.timer = nil
		if ps.conn != connLinger {
			return
		}
		if h.relaying(ps) {
			// Relaying began while we lingered (a circuit over it): the
			// peer keeps the connection, and so do we.
			ps.conn, ps.spent = connUp, false
			h.pump(ps)
			h.idle(ps)
			return
		}
		h.disconnect(ps, since)
	}))
}

// disconnect closes the peer's connections opened before idleSince (all of
// them if it is zero). The Disconnected event ends the closing; should it
// never come, a check after Linger looks at the host.
//
// idleSince is when the handler found the peer idle. A connection opened
// since is the peer's, for new work: it may have seen our connection go
// and dialed again, and our node may not have answered its first stream
// yet, so the handler has not seen the work. Closing it would fail the
// peer's dial as if we refused it (p2p.ErrClosedAtHandshake), which costs
// an attempt. It stays, and the peer is connected again: activity or the
// close check (disconnectCheckIn) finds it.
func (h *Handler) disconnect(ps *peerState, idleSince time.Time) {
	ps.conn, ps.reused = connClosing, false
	if err := h.send(p2p.DisconnectFrom{Peer: ps.id, OpenedBefore: idleSince}); err != nil {
		return // the node is closing: so is every connection
	}
	h.disconnectCheckIn(ps)
}

// disconnectCheckIn arms the check that ends a closing whose Disconnected
// event does not come: the node reports a peer's first connection and its
// last disconnection, so a connection opened while the old one closed
// folds both events away, and the node drops connection events for a
// handler too far behind.
func (h *Handler) disconnectCheckIn(ps *peerState) {
	h.setPeerTimer(ps, h.timers.after(h.cfg.Linger, func() {
		ps.timer = nil
		if ps.conn != connClosing {
			return
		}
		if h.node.Host().Network().Connectedness(ps.id) != network.Connected {
			h.onDisconnected(ps.id)
			return
		}
		// The close went through long ago: this is a connection opened
		// since.
		ps.conn, ps.spent = connUp, false
		h.pump(ps)
		h.idle(ps)
	}))
}

// activity notes that the peer started an exchange with us: a connection we
// were lingering on is in use again, and one we were closing was replaced.
func (h *Handler) activity(ps *peerState) {
	switch ps.conn {
	case connDown:
		ps.conn = connUp // its Connected event was lost
	case connLinger:
		ps.conn = connUp
	case connClosing:
		ps.reused = true
	}
	if ps.conn == connUp {
		h.setPeerTimer(ps, nil)
	}
}

func (h *Handler) onConnected(p peer.ID) {
	ps := h.peer(p)
	if ps.conn == connClosing || ps.conn == connLinger {
		// The Disconnected event of the old connection was lost.
		h.onDisconnected(p)
		ps = h.peer(p)
	}
	ps.conn, ps.spent = connUp, false
	h.pump(ps)
	h.idle(ps)
}

// onDisconnected: the last connection to the peer closed. Requests awaiting
// their reply are resent (the responder dedupes them, and needs a connection
// to reply on); queued exchanges can dial.
func (h *Handler) onDisconnected(p peer.ID) {
	ps := h.peers[p]
	if ps == nil {
		return
	}
	ps.conn, ps.reused, ps.spent = connDown, false, false
	h.setPeerTimer(ps, nil)
	for _, ex := range ps.exchanges() {
		if ex.role == Dialer && ex.state == StateAwaitReply {
			h.lost(ex)
		}
	}
	h.pump(ps)
	h.gc(ps)
}
