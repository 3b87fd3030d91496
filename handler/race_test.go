//go:build race

package handler_test

// raceAllocs is what the race detector adds to an exchange's allocations:
// it makes sync.Pool drop a quarter of what is put into it, so the pools of
// yamux, Noise and the streams' buffers (p2p) allocate again and again.
// Measured: 8. make test also runs the test without the race detector,
// where the bound is tight.
const raceAllocs int = 12
