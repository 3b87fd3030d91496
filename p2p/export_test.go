package p2p

import "time"

// WithDrainWait sets how long a disconnection waits for the peer to close
// its half of a stream, in place of the default (drain.go): tests make it
// long, so that a drain cannot end by its timeout before they are done.
func WithDrainWait(d time.Duration) func(*Config) {
	return func(c *Config) { c.drainWait = d }
}
