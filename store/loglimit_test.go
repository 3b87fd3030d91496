package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Pebble's repeated errors are logged once per kind per interval, the next
// line saying how many were held back; the same failure on another file is
// the same kind, another failure is not. (A flush failing for lack of room
// was logged thousands of times a second, each with a stack trace.)
func TestPebbleErrorsRateLimited(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	l := newLogLimiter(zap.New(core))
	now := time.Unix(1_700_000_000, 0)
	l.now = func() time.Time { return now }
	enospc := func(n int) error {
		return fmt.Errorf("write /data/store/%06d.sst: %w", n, errors.New("no space left on device"))
	}
	for n := range 1000 {
		l.error("pebble background error", enospc(n))
	}
	l.error("pebble background error", errors.New("input/output error"))
	if got := logs.Len(); got != 2 {
		t.Fatalf("%d lines for 1000 repeats of one error and one other, want 2", got)
	}
	if e := logs.All()[0]; e.ContextMap()["error"] != enospc(0).Error() || e.ContextMap()["repeated"] != nil {
		t.Errorf("first line %v, want the first error, no count", e.ContextMap())
	}
	now = now.Add(logInterval)
	l.error("pebble background error", enospc(1000))
	if got := logs.Len(); got != 3 {
		t.Fatalf("after the interval: %d lines, want 3", got)
	}
	if e := logs.All()[2]; e.ContextMap()["repeated"] != int64(999) {
		t.Errorf("line after the interval %v, want repeated 999", e.ContextMap())
	}
	l.error("pebble background error", enospc(1001))
	l.flush()
	if got := logs.Len(); got != 4 {
		t.Fatalf("after flush: %d lines, want 4", got)
	}
	if e := logs.All()[3]; e.Message != "pebble error repeated" || e.ContextMap()["repeated"] != int64(1) {
		t.Errorf("flush: %s %v, want one held back", e.Message, e.ContextMap())
	}
	// Many kinds: the limiter's memory stays bounded.
	for n := range 10 * maxLogKinds {
		l.error(fmt.Sprintf("kind %c%c", 'a'+n%26, 'a'+n/26), nil)
	}
	if len(l.kinds) > maxLogKinds {
		t.Errorf("%d kinds tracked, want at most %d", len(l.kinds), maxLogKinds)
	}
}
