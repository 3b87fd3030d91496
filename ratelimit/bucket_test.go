package ratelimit

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestBucketMatchesRateLimiter checks the bucket against the reference it
// replaces: golang.org/x/time/rate with rate.Every(Refill) and burst Burst,
// charged with AllowN(now, 1). Both must agree on every spend, and on the
// tokens left, over long random runs that mix floods, pauses and spends
// right around the moment a token comes back.
func TestBucketMatchesRateLimiter(t *testing.T) {
	for _, c := range []struct {
		burst  int
		refill time.Duration
	}{{1, time.Second}, {3, 10 * time.Second}, {20, time.Second}, {20, 3 * time.Second}, {100, 7 * time.Millisecond}} {
		t.Run(fmt.Sprint(c.burst, "/", c.refill), func(t *testing.T) {
			epoch := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			p := newPolicy(Config{Burst: c.burst, Refill: c.refill, Now: func() time.Time { return epoch }})
			ref := rate.NewLimiter(rate.Every(c.refill), c.burst)
			var b bucket
			b.fill(0, p)
			rng := rand.New(rand.NewPCG(uint64(c.burst), uint64(c.refill)))
			var now int64
			var allowed, denied int
			for i := range 100_000 {
				switch rng.IntN(4) {
				case 0: // flood: no time passes
				case 1:
					now += rng.Int64N(int64(c.refill) / 4)
				case 2:
					now += rng.Int64N(2 * int64(c.refill))
				default:
					// A few µs either side of the next token, where the
					// two would part ways if either drifted. (Closer
					// than 1ns they do part: rate.Limiter truncates the
					// wait for the missing fraction of a token to whole
					// nanoseconds and lets that spend through; the
					// bucket is exact, see TestBucketRefilledIsExact.)
					now = max(now, b.refilled(now, p)+(rng.Int64N(5)-2)*int64(time.Microsecond))
				}
				at := epoch.Add(time.Duration(now))
				want := ref.AllowN(at, 1)
				got, left := b.take(now, p)
				if got != want {
					t.Fatalf("spend %d at %v: bucket %v, rate.Limiter %v (tokens %v)",
						i, time.Duration(now), got, want, ref.TokensAt(at))
				}
				if refLeft := ref.TokensAt(at); math.Abs(left-refLeft) > 1e-6 {
					t.Fatalf("spend %d: %v tokens left, rate.Limiter has %v", i, left, refLeft)
				}
				if got {
					allowed++
				} else {
					denied++
				}
			}
			if allowed < 10_000 || denied < 10_000 {
				t.Fatalf("only %d allowed and %d denied: the run does not exercise both", allowed, denied)
			}
		})
	}
}

func TestBucketRefilledIsExact(t *testing.T) {
	p := newPolicy(Config{Burst: 2, Refill: 3 * time.Second}.withDefaults())
	var b bucket
	b.fill(0, p)
	b.take(0, p)
	b.take(1000, p)
	if ok, _ := b.take(2000, p); ok {
		t.Fatal("third spend on a burst of 2 succeeded")
	}
	at := b.refilled(2000, p)
	if ok, _ := b.take(at-1, p); ok {
		t.Fatal("a token was back before refilled said")
	}
	if ok, _ := b.take(at, p); !ok {
		t.Fatal("no token at the instant refilled said")
	}
}
