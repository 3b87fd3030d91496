//go:build race

package main

// raceEnabled reports that the tests run with the race detector, and so do
// the p2pnode processes they start (the test binary: see asP2pnode), so
// that races in the CLI itself are caught.
const raceEnabled = true
