package gossip

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// A member raising the same complaint over and over gets one log line per
// peerLogInterval, the next one saying how many were held back; another
// member's lines are not held back by it.
func TestLogLinesLimitedPerPeer(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	now := time.Unix(1_800_000_000, 0)
	s := &Service{log: log}
	s.logs = newPeerLog(log, func() time.Time { return now })
	a, b := peer.ID("a"), peer.ID("b")
	for i := 0; i < 1000; i++ {
		s.logPeer(zap.WarnLevel, a, "fork", "membership fork", zap.Int("i", i))
	}
	s.logPeer(zap.WarnLevel, b, "fork", "membership fork")
	s.logPeer(zap.InfoLevel, a, "refused:busy", "membership version refused", zap.Error(errors.New("busy")))
	if n := logs.Len(); n != 3 {
		t.Fatalf("%d lines, want 3: %v", n, logs.All())
	}
	now = now.Add(peerLogInterval)
	s.logPeer(zap.WarnLevel, a, "fork", "membership fork")
	last := logs.All()[logs.Len()-1]
	if got := last.ContextMap()["repeated"]; got != int64(999) {
		t.Fatalf("repeated %v, want 999: %v", got, last.ContextMap())
	}
}
