package gossip

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// What the service remembers of the alarms it raised, per peer: the forks
// reported, the fork exchanges run, the last Behind. A member can claim a
// fork or a newer version in every Hello, thousands a second, without
// proof: remembered, an alarm is not raised again nor an exchange run again
// for a while. The memory is bounded (maxForks, maxClaims, maxBehinds) so
// that members cannot grow it at will; Service.alarmMu guards it.

// forkKey names a fork reported: a peer holds the document of that hash
// for that version.
type forkKey struct {
	peer    peer.ID
	version uint64
	hash    membership.Hash
}

// claimKey names a fork exchange: a peer named, or sent, another document
// of a version we hold.
type claimKey struct {
	peer    peer.ID
	version uint64
}

// claimMark is the hash the peer named in a fork exchange, and when that
// exchange began (or was last repeated).
type claimMark struct {
	hash membership.Hash
	at   time.Time
}

// claimKind says what a fork claim is next to the exchanges remembered.
type claimKind int

const (
	claimNew   claimKind = iota // none remembered: exchange the documents
	claimAgain                  // the same hash as the exchange remembered
	claimOther                  // another hash than the exchange remembered
)

// behindMark is the last Behind reported for a peer.
type behindMark struct {
	version uint64
	at      time.Time
}

// Bounds of what the service remembers of the alarms it raised. Past
// maxForks, the oldest fork reported is forgotten (a fork needs a
// threshold of members to sign twice: a handful, not thousands); past
// maxBehinds, the marks are forgotten all at once. A fork exchange is
// remembered for claimWindow after it ran, at
// most maxClaims of them (past it, the expired ones and then the oldest
// are forgotten): a peer can name at most the versions a node keeps
// (MaxHistory), so an honest pair's exchanges are evicted only by a
// thousand members claiming forks together.
const (
	maxForks       = 1024
	maxBehinds     = 4096
	behindInterval = time.Minute
	maxClaims      = 4096
	claimWindow    = 10 * time.Minute
)

// claim says whether a fork exchange with p for version v, which we hold
// under another hash, is remembered, and with which hash. It records
// nothing: remember does, once our side of an exchange is over. Recorded
// as it starts, an exchange cut short (a dropped connection), or one of
// two sessions crossing (each side pushing as it applies its fork), left
// both sides remembering an exchange in which neither read the other's
// document: the fork went unreported.
func (s *Service) claim(p peer.ID, v uint64, hash membership.Hash) (claimKind, claimMark) {
	now := s.clock()
	s.alarmMu.Lock()
	defer s.alarmMu.Unlock()
	if m, ok := s.claims[claimKey{p, v}]; ok && now.Sub(m.at) < claimWindow {
		if m.hash != hash {
			return claimOther, m
		}
		return claimAgain, m
	}
	return claimNew, claimMark{}
}

// remember records a fork exchange with p for version v, p naming hash,
// for claimWindow from now: the sessions naming it again within that time
// get no document of ours. Counted from the exchange, not from the last
// session naming it, so that an exchange that went wrong (the peer's
// document lost with its connection) runs again within claimWindow however
// often the peer connects.
func (s *Service) remember(p peer.ID, v uint64, hash membership.Hash) {
	k := claimKey{p, v}
	now := s.clock()
	s.alarmMu.Lock()
	defer s.alarmMu.Unlock()
	if m, ok := s.claims[k]; ok && now.Sub(m.at) < claimWindow {
		return // a crossing session remembered it: keep the first
	}
	if len(s.claims) >= maxClaims {
		var oldest claimKey
		var first time.Time
		for key, m := range s.claims {
			if now.Sub(m.at) >= claimWindow {
				delete(s.claims, key)
			} else if first.IsZero() || m.at.Before(first) {
				oldest, first = key, m.at
			}
		}
		if len(s.claims) >= maxClaims {
			delete(s.claims, oldest)
		}
	}
	s.claims[k] = claimMark{hash, now}
}

// proven reports the fork p proved: it holds theirs, valid against the
// version before, where we hold ours. Once per peer, version and document,
// among the last maxForks reported.
func (s *Service) proven(p peer.ID, ours, theirs *membership.Document) {
	k := forkKey{p, ours.Version(), theirs.Hash()}
	s.alarmMu.Lock()
	_, seen := s.forks[k]
	if !seen {
		if len(s.forks) >= maxForks {
			var oldest forkKey
			var first time.Time
			for key, at := range s.forks {
				if first.IsZero() || at.Before(first) {
					oldest, first = key, at
				}
			}
			delete(s.forks, oldest)
		}
		s.forks[k] = s.clock()
	}
	s.alarmMu.Unlock()
	if seen {
		return
	}
	s.logPeer(zap.WarnLevel, p, "fork", "membership fork: a member holds another valid document with the same version",
		zap.Uint64("version", ours.Version()), zap.Stringer("hash", ours.Hash()), zap.Stringer("peer_hash", theirs.Hash()))
	s.events.Push(Conflict{Peer: p, Version: ours.Version(), Hash: ours.Hash(), PeerHash: theirs.Hash(), PeerDocument: theirs}, false)
}

// behind reports that p's Hello named version theirs, newer than ours, and
// the session did not bring us there. A Hello proves nothing, so a peer
// gets at most one Behind a minute, and none for the version it was last
// reported at.
func (s *Service) behind(p peer.ID, theirs, ours uint64) {
	now := s.clock()
	s.alarmMu.Lock()
	last, ok := s.behinds[p]
	report := !ok || (last.version != theirs && now.Sub(last.at) >= behindInterval)
	if report {
		if !ok && len(s.behinds) >= maxBehinds {
			clear(s.behinds)
		}
		s.behinds[p] = behindMark{theirs, now}
	}
	s.alarmMu.Unlock()
	if !report {
		s.log.Debug("a member says again it holds a newer membership version", zap.Stringer("peer", p), zap.Uint64("peer_version", theirs))
		return
	}
	s.logPeer(zap.WarnLevel, p, "behind", "a member holds a newer membership version it could not hand over",
		zap.Uint64("peer_version", theirs), zap.Uint64("version", ours))
	s.events.Push(Behind{Peer: p, PeerVersion: theirs, Version: ours}, false)
}
