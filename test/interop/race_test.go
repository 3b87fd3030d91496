//go:build race

package interop_test

// raceEnabled makes the test build the p2pnode it runs with the race
// detector too, as cmd/p2pnode's tests do (the build is then shared).
const raceEnabled = true
