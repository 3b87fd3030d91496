package gossip

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// WithVerify returns c whose service checks versions with verify instead
// of membership.VerifyNext, so that a test can hold a verification in
// progress.
func WithVerify(c Config, verify func(cur, next *membership.Document, now time.Time) (membership.Report, error)) Config {
	c.verify = verify
	return c
}

// WithInboundDone returns c whose service calls done once a session a peer
// opened no longer counts as running.
func WithInboundDone(c Config, done func(peer.ID)) Config {
	c.inboundDone = done
	return c
}

// SetClock makes s read the time from now for its alarms' memory (Behind
// events, fork exchanges). Call it before the first session.
func SetClock(s *Service, now func() time.Time) { s.clock = now }
