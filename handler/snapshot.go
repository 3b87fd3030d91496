package handler

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// maxLastEnded bounds the peers whose last exchange Snapshot remembers.
// Exchanges run with allowlisted peers, far fewer in practice.
const maxLastEnded = 4096

// Snapshot is the handler's load at one moment, for an operator's status
// display. It is a copy: nothing in it changes afterwards.
type Snapshot struct {
	// Active counts the exchanges started (dialed or received) and not
	// ended; Queued the outbound ones waiting behind a peer's active ones.
	Active, Queued int
	// PendingRequests counts the requests received that the application
	// has not answered yet.
	PendingRequests int
	// EventsBacklog and OutcomesBacklog count what waits for the
	// application to read it on Events and Outcomes.
	EventsBacklog, OutcomesBacklog int
	// Peers holds the peers the handler tracks (connected, or with
	// exchanges) and those whose last exchange it remembers.
	Peers map[peer.ID]PeerSnapshot
}

// PeerSnapshot is the handler's view of one peer.
type PeerSnapshot struct {
	// Conn is "connected", "lingering", "closing" or "disconnected".
	Conn string
	// Active and Queued count the peer's exchanges, as Snapshot's do.
	Active, Queued int
	// LastExchange is when the last exchange with the peer ended, in
	// either role; zero if none has since the handler started.
	LastExchange time.Time
}

// Snapshot returns the handler's load. It holds the handler's lock only
// while it copies.
func (h *Handler) Snapshot() Snapshot {
	s := Snapshot{Peers: make(map[peer.ID]PeerSnapshot)}
	h.mu.Lock()
	s.Active = h.active
	for id, ps := range h.peers {
		// Not ps.queue.len(): the queue keeps an exchange that ended
		// while queued (cancelled, or a resumed request answered) until
		// pump pops it. outbound holds the dialed exchanges not ended,
		// started ones included.
		q := len(ps.outbound) - ps.started
		s.Queued += q
		s.Peers[id] = PeerSnapshot{Conn: ps.conn.String(), Active: ps.busy(), Queued: q, LastExchange: ps.lastEnded}
	}
	for id, t := range h.lastEnded {
		p, ok := s.Peers[id]
		if !ok {
			p.Conn = connDown.String()
		}
		if p.LastExchange.IsZero() { // else the peer's, later
			p.LastExchange = t
		}
		s.Peers[id] = p
	}
	h.mu.Unlock()
	h.pending.mu.Lock()
	for _, ex := range h.pending.m {
		if ex.claim == unclaimed {
			s.PendingRequests++
		}
	}
	h.pending.mu.Unlock()
	s.EventsBacklog = h.events.Queued() + len(h.events.C())
	s.OutcomesBacklog = h.outcomes.Queued() + len(h.outcomes.C())
	return s
}

// noteEnded records that p's last exchange ended at now, for a peer that
// gc forgets: while it is tracked, its peerState holds the time, which
// spares every exchange's end a write to this map. h.mu is held.
func (h *Handler) noteEnded(p peer.ID, now time.Time) {
	if h.lastEnded == nil {
		h.lastEnded = make(map[peer.ID]time.Time)
	}
	// Below the bound the assignment is the map's one operation per end.
	if len(h.lastEnded) >= maxLastEnded {
		if _, ok := h.lastEnded[p]; !ok {
			// Forget some other peer: which one does not matter much, and
			// the bound keeps a node that dials many keys from growing.
			for k := range h.lastEnded {
				delete(h.lastEnded, k)
				break
			}
		}
	}
	h.lastEnded[p] = now
}
