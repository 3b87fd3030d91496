package test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// node, raw host and helper goroutine must be stopped by its test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
