package testutil

import "testing"

// The ports are outside the ephemeral range, free when picked, and never
// handed out twice.
func TestLoopbackPorts(t *testing.T) {
	t.Parallel()
	low, high := portRange(t)
	seen := map[int]bool{}
	for _, p := range append(LoopbackPorts(t, 20), LoopbackPort(t)) {
		if p < low || p >= high {
			t.Errorf("port %d outside [%d, %d)", p, low, high)
		}
		if seen[p] {
			t.Errorf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
