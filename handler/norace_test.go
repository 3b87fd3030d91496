//go:build !race

package handler_test

// raceAllocs is what the race detector adds to an exchange's allocations.
const raceAllocs int = 0
