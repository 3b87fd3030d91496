package gossip

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Rate-limiting the service's log lines about what a peer did. A member can
// open sessions as fast as the connection carries them (thousands a
// second), and each could log a line at warn level, which an operator
// reads: one peer must not flood the log nor bury another's lines. So each
// kind of line about one peer is logged at most once per peerLogInterval;
// the next one after that says how many were held back. Events and metrics
// are not limited here.

// peerLogInterval is how often one kind of line about one peer is logged at
// most.
const peerLogInterval = 30 * time.Second

// maxPeerLogKeys bounds the (peer, kind) pairs remembered. Past it the
// ones whose interval is over are forgotten, and if that is not enough,
// the rest share one entry.
const maxPeerLogKeys = 4096

// peerLog logs lines about peers, rate-limited per peer and kind. Its
// methods are safe for concurrent use.
type peerLog struct {
	log  *zap.Logger
	now  func() time.Time
	mu   sync.Mutex
	keys map[peerLogKey]*peerLogMark
}

type peerLogKey struct {
	peer peer.ID
	kind string
}

type peerLogMark struct {
	last time.Time // when a line was last logged
	held int       // lines held back since
}

func newPeerLog(log *zap.Logger, now func() time.Time) *peerLog {
	return &peerLog{log: log, now: now, keys: make(map[peerLogKey]*peerLogMark)}
}

// allow reports whether a line of kind about p may be logged now, and how
// many were held back since the last one that was.
func (l *peerLog) allow(p peer.ID, kind string) (ok bool, held int) {
	k := peerLogKey{p, kind}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.keys[k]
	if m == nil && len(l.keys) >= maxPeerLogKeys {
		for key, m := range l.keys {
			if now.Sub(m.last) >= peerLogInterval {
				delete(l.keys, key)
			}
		}
		if len(l.keys) >= maxPeerLogKeys {
			k = peerLogKey{} // one entry for the rest
			m = l.keys[k]
		}
	}
	if m == nil {
		l.keys[k] = &peerLogMark{last: now}
		return true, 0
	}
	if now.Sub(m.last) < peerLogInterval {
		m.held++
		return false, 0
	}
	held = m.held
	m.last, m.held = now, 0
	return true, held
}

// logPeer logs msg about p at level, with fields, unless a line of the same
// kind about p went out less than peerLogInterval ago. Lines below the
// logger's level cost no more than the check.
func (s *Service) logPeer(level zapcore.Level, p peer.ID, kind, msg string, fields ...zap.Field) {
	if !s.log.Core().Enabled(level) {
		return
	}
	ok, held := s.logs.allow(p, kind)
	if !ok {
		return
	}
	fields = append([]zap.Field{zap.Stringer("peer", p)}, fields...)
	if held > 0 {
		fields = append(fields, zap.Int("repeated", held))
	}
	s.log.Log(level, msg, fields...)
}
