//go:build race

package main

// raceEnabled makes the end-to-end tests build the binary they run with the
// race detector too, so that races in the CLI itself are caught.
const raceEnabled = true
