package store

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: every
// Store's committer must be gone once Close returns.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
