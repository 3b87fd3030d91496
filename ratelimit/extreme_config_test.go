package ratelimit_test

import (
	"math"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// An operator who wants bans to last "for ever" sets the longest duration
// there is (p2pnode accepts --rate-ban 2562047h). The ban must then outlast
// any practical run, not end as soon as a token is back because the ban's
// end overflowed int64.
func TestHugeBanDurationDoesNotEndEarly(t *testing.T) {
	l, clk := testLimiter(t, ratelimit.Config{Burst: 1, Refill: time.Second,
		BanDuration: time.Duration(math.MaxInt64)})
	clk.Advance(time.Second) // any instant after the limiter's epoch
	start := clk.Now()
	if v := l.SpendPeer("p", ratelimit.MalformedMessage); v.Exhausted {
		t.Fatalf("first spend: %+v", v)
	}
	v := l.SpendPeer("p", ratelimit.MalformedMessage)
	if !v.Exhausted || !v.NewlyExhausted {
		t.Fatalf("second spend did not ban: %+v", v)
	}
	if min := start.Add(50 * 365 * 24 * time.Hour); v.Until.Before(min) {
		t.Errorf("ban of %v ends at %v, %v after it began", time.Duration(math.MaxInt64), v.Until, v.Until.Sub(start))
	}
	clk.Advance(time.Hour)
	if !l.PeerBanned("p") {
		t.Errorf("ban of %v lifted after an hour", time.Duration(math.MaxInt64))
	}
}

// Config.Burst is the most tokens a key can hold, and so how many spends it
// absorbs before the next one exhausts it, whatever Refill is. An operator
// who wants no forgiveness at all ("cut off after Burst acts, for good")
// sets a refill of a century; the key must still absorb Burst spends.
func TestLongRefillKeepsBurst(t *testing.T) {
	for _, refill := range []time.Duration{
		10 * 365 * 24 * time.Hour,  // burst*refill beyond the 2^61ns cap
		100 * 365 * 24 * time.Hour, // refill alone beyond it
		time.Duration(math.MaxInt64),
	} {
		l, _ := testLimiter(t, ratelimit.Config{Burst: 20, Refill: refill, BanDuration: time.Minute})
		for i := range 20 {
			if v := l.SpendPeer("p", ratelimit.MalformedMessage); v.Exhausted {
				t.Errorf("refill %v: spend %d of a burst of 20 exhausted the key: %+v", refill, i+1, v)
				break
			}
		}
		if v := l.SpendPeer("p", ratelimit.MalformedMessage); !v.Exhausted {
			t.Errorf("refill %v: spend 21 did not exhaust the key: %+v", refill, v)
		}
		// And the ban lasts until a token is back: for practical purposes,
		// for ever.
		if !l.PeerBanned("p") {
			t.Errorf("refill %v: not banned after exhaustion", refill)
		}
	}
}

// With Refill longer than BanDuration a ban lasts until a token is back, so
// a ban that began later can end sooner. When a shard holds nothing but bans
// and a new key comes, the shard must make room with the ban that has
// already lapsed, not lift one still running.
func TestEvictionKeepsRunningBanOverLapsedOne(t *testing.T) {
	l, clk := testLimiter(t, ratelimit.Config{Burst: 3, Refill: time.Hour, BanDuration: time.Minute, MaxKeys: 2})
	spend := func(k string, n int) ratelimit.Verdict {
		var v ratelimit.Verdict
		for range n {
			v = l.SpendPeer(k, ratelimit.Unauthorized)
		}
		return v
	}
	spend("b", 3) // b's bucket is empty from t=0: a token is back at 1h
	clk.Advance(10 * time.Minute)
	va := spend("a", 4) // a drains and is banned at 10m, until 1h10m
	clk.Advance(time.Nanosecond)
	vb := spend("b", 1) // b is banned after a, until 1h
	if !va.NewlyExhausted || !vb.NewlyExhausted || !vb.Until.Before(va.Until) {
		t.Fatalf("setup: a %+v, b %+v", va, vb)
	}
	clk.Advance(time.Hour - 5*time.Minute) // 1h5m: b's ban has lapsed, a's runs
	if l.PeerBanned("b") || !l.PeerBanned("a") {
		t.Fatalf("setup: banned a %v b %v", l.PeerBanned("a"), l.PeerBanned("b"))
	}
	spend("c", 1) // the shard is full: b's lapsed ban should make room
	if !l.PeerBanned("a") {
		t.Errorf("a's ban (until %v) lifted at %v to make room, though b's had lapsed", va.Until, clk.Now())
	}
	if st := l.Stats().Peers; st.EvictedBanned != 0 {
		t.Errorf("EvictedBanned = %d, want 0", st.EvictedBanned)
	}
}
