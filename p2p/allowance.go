package p2p

import (
	"net/netip"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// An allowance grants a few favours per source IP and window:
// the cheaper charge of an honest-looking mistake, handed out only as
// often as an honest node makes that mistake, so that nobody can make a
// flood of them cheap. It is a token bucket like the misbehaviour budget's
// (a ratelimit.Limiter of its own, which the node does not expose), so its
// memory is bounded the same way: past maxKeys keys the least recently
// used is forgotten, which only ever grants a favour sooner.
type allowance struct {
	l *ratelimit.Limiter
}

// newAllowance grants n favours per key at once and n per window
// sustained.
func newAllowance(n int, window time.Duration, maxKeys int, now func() time.Time) *allowance {
	return &allowance{l: ratelimit.New(ratelimit.Config{
		Burst:  n,
		Refill: window / time.Duration(n),
		// Out of favours until one is earned back, not longer.
		BanDuration: time.Nanosecond,
		MaxKeys:     maxKeys,
		Now:         now,
	})}
}

// ip takes one of ip's favours, keyed as the rate limiter keys IPs (an
// IPv6 /64 as one), and reports whether there was one left. The reason is
// only a label in the allowance's own counters, which nobody reads.
func (a *allowance) ip(ip netip.Addr) bool {
	return a != nil && !a.l.SpendIP(ip, ratelimit.FailedHandshake).Exhausted
}
