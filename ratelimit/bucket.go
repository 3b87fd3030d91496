package ratelimit

// bucket is a token bucket kept as a single instant, in the manner of the
// generic cell rate algorithm: empty is when the bucket held (or will hold)
// no tokens, so at time now it holds (now-empty)/refill tokens, capped at
// burst. It behaves exactly as a golang.org/x/time/rate.Limiter with
// rate.Every(refill) and burst charged with AllowN(now, 1) (a test checks
// that against the real thing), but it is one int64 instead of 80 bytes
// with a mutex of its own, updates in integer nanoseconds with no float
// rounding, and needs no locking beyond the shard's. Times are nanoseconds
// on the policy's clock.
type bucket struct {
	empty int64
}

// fill makes b full at now.
func (b *bucket) fill(now int64, p *policy) { b.empty = now - p.capacity }

// base returns the empty instant that accounts for the cap: tokens beyond
// burst are not banked.
func (b *bucket) base(now int64, p *policy) int64 {
	return max(b.empty, now-p.capacity)
}

// take spends one token at now if a whole one is there, reporting whether it
// did and the tokens left either way.
func (b *bucket) take(now int64, p *policy) (ok bool, left float64) {
	return b.takeCost(now, p, p.refill)
}

// takeCost is take for a spend worth cost nanoseconds of refill (p.refill
// is one token): it succeeds if the bucket holds at least that much.
func (b *bucket) takeCost(now int64, p *policy, cost int64) (ok bool, left float64) {
	base := b.base(now, p)
	if now-base < cost {
		return false, float64(max(now-base, 0)) / float64(p.refill)
	}
	b.empty = base + cost
	return true, float64(now-b.empty) / float64(p.refill)
}

// tokens returns the tokens b holds at now.
func (b *bucket) tokens(now int64, p *policy) float64 {
	return float64(max(now-b.base(now, p), 0)) / float64(p.refill)
}

// full reports whether b holds burst tokens at now, when it is
// indistinguishable from a bucket never charged.
func (b *bucket) full(now int64, p *policy) bool {
	return now-b.empty >= p.capacity
}

// refilled returns when b will next hold one whole token.
func (b *bucket) refilled(now int64, p *policy) int64 {
	return b.base(now, p) + p.refill
}
