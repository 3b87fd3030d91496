package ratelimit_test

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The package promises to start no goroutine; goleak holds it to that.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is an injectable clock that moves only when told to, so tests
// never sleep and never depend on the machine's speed.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
