package store

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: every
// Store's committer and reclaimer, and every goroutine pebble starts, must
// be gone once Close returns. Run as a helper process (process_test.go), the
// test binary plays the other process instead of running tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	goleak.VerifyTestMain(m)
}
