package ratelimit_test

import (
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// testLimiter returns a limiter on a fake clock with small, readable numbers.
func testLimiter(t *testing.T, cfg ratelimit.Config) (*ratelimit.Limiter, *fakeClock) {
	t.Helper()
	clk := newClock()
	cfg.Now = clk.Now
	return ratelimit.New(cfg), clk
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestZeroConfigTakesDefaults(t *testing.T) {
	for _, cfg := range []ratelimit.Config{
		{},
		{Burst: -1, Refill: -time.Second, BanDuration: -time.Second, MaxKeys: -5},
	} {
		got := ratelimit.New(cfg).Config()
		if got.Burst != ratelimit.DefaultBurst || got.Refill != ratelimit.DefaultRefill ||
			got.BanDuration != ratelimit.DefaultBanDuration || got.MaxKeys != ratelimit.DefaultMaxKeys ||
			got.Now == nil {
			t.Errorf("New(%+v).Config() = %+v, want the defaults", cfg, got)
		}
	}
	// The zero limiter must work end to end on the real clock.
	l := ratelimit.New(ratelimit.Config{})
	if v := l.SpendPeer("p", ratelimit.MalformedMessage); v.Exhausted || !near(v.Remaining, ratelimit.DefaultBurst-1) {
		t.Fatalf("first spend on a zero-config limiter = %+v", v)
	}
}

func TestBurstThenExhaustion(t *testing.T) {
	const burst = 5
	l, clk := testLimiter(t, ratelimit.Config{Burst: burst, Refill: time.Minute, BanDuration: time.Hour})
	for i := 1; i <= burst; i++ {
		v := l.SpendPeer("p", ratelimit.MalformedMessage)
		if v.Exhausted || v.NewlyExhausted || !v.Until.IsZero() || !near(v.Remaining, float64(burst-i)) {
			t.Fatalf("spend %d = %+v, want not exhausted with %d left", i, v, burst-i)
		}
		if l.PeerBanned("p") {
			t.Fatalf("banned after %d of %d spends", i, burst)
		}
	}
	v := l.SpendPeer("p", ratelimit.MalformedMessage)
	want := clk.Now().Add(time.Hour)
	if !v.Exhausted || !v.NewlyExhausted || !v.Until.Equal(want) || v.Remaining >= 1 {
		t.Fatalf("spend %d = %+v, want newly exhausted until %v", burst+1, v, want)
	}
	if !l.PeerBanned("p") {
		t.Fatal("exhausted key is not banned")
	}
}

func TestSpendOnBannedKeyExtendsNothing(t *testing.T) {
	l, clk := testLimiter(t, ratelimit.Config{Burst: 1, Refill: time.Second, BanDuration: 10 * time.Second})
	l.SpendPeer("p", ratelimit.UnansweredAck)
	first := l.SpendPeer("p", ratelimit.UnansweredAck)
	if !first.NewlyExhausted {
		t.Fatalf("second spend with burst 1 = %+v, want newly exhausted", first)
	}
	clk.Advance(9 * time.Second)
	for range 100 {
		v := l.SpendPeer("p", ratelimit.UnansweredAck)
		if !v.Exhausted || v.NewlyExhausted || !v.Until.Equal(first.Until) {
			t.Fatalf("spend during ban = %+v, want exhausted, not new, until %v", v, first.Until)
		}
	}
	clk.Advance(time.Second)
	if l.PeerBanned("p") {
		t.Fatal("spends during the ban extended it")
	}
	if st := l.Stats().Peers; st.Exhaustions != 1 || st.Spent[ratelimit.UnansweredAck] != 102 {
		t.Fatalf("stats = %+v, want 1 exhaustion and 102 spends", st)
	}
}

func TestRefillBringsKeyBack(t *testing.T) {
	// A ban shorter than the refill leaves the refill in charge, so this
	// exercises the bucket rather than the ban.
	l, clk := testLimiter(t, ratelimit.Config{Burst: 3, Refill: 10 * time.Second, BanDuration: time.Nanosecond})
	for range 3 {
		l.SpendPeer("p", ratelimit.MalformedMessage)
	}
	clk.Advance(5 * time.Second)
	if v := l.SpendPeer("p", ratelimit.MalformedMessage); !v.Exhausted {
		t.Fatalf("spend with half a token = %+v, want exhausted", v)
	}
	l.Forgive("p")
	for range 3 {
		l.SpendPeer("p", ratelimit.MalformedMessage)
	}
	clk.Advance(25 * time.Second) // 2.5 tokens back
	for i := range 2 {
		if v := l.SpendPeer("p", ratelimit.MalformedMessage); v.Exhausted {
			t.Fatalf("refilled spend %d = %+v", i, v)
		}
	}
	if v := l.SpendPeer("p", ratelimit.MalformedMessage); !v.Exhausted || !near(v.Remaining, 0.5) {
		t.Fatalf("third spend on 2.5 tokens = %+v, want exhausted with 0.5 left", v)
	}
	// Refill caps at Burst however long the key stays idle.
	l.Forgive("p")
	l.SpendPeer("p", ratelimit.MalformedMessage)
	clk.Advance(time.Hour)
	if v := l.SpendPeer("p", ratelimit.MalformedMessage); !near(v.Remaining, 2) {
		t.Fatalf("spend after an idle hour = %+v, want 2 left (capped at burst)", v)
	}
}

func TestBanDurationHonoured(t *testing.T) {
	const ban = 30 * time.Second
	l, clk := testLimiter(t, ratelimit.Config{Burst: 2, Refill: time.Second, BanDuration: ban})
	for range 3 {
		l.SpendPeer("p", ratelimit.ProtocolViolation)
	}
	start := clk.Now()
	clk.Advance(ban - time.Nanosecond)
	if !l.PeerBanned("p") {
		t.Fatal("ban ended early")
	}
	if v := l.SpendPeer("p", ratelimit.ProtocolViolation); !v.Exhausted || !v.Until.Equal(start.Add(ban)) {
		t.Fatalf("spend just before the end = %+v", v)
	}
	clk.Advance(time.Nanosecond)
	if l.PeerBanned("p") {
		t.Fatal("still banned when the ban ended")
	}
	// The bucket refilled throughout the ban, so the key is back in full.
	if v := l.SpendPeer("p", ratelimit.ProtocolViolation); v.Exhausted || !near(v.Remaining, 1) {
		t.Fatalf("first spend after the ban = %+v, want a full bucket", v)
	}
}

func TestBanLastsUntilATokenIsBack(t *testing.T) {
	// With a ban shorter than one refill, the ban must run until a token
	// is back; otherwise the first spend after it would ban again at once.
	for _, refill := range []time.Duration{time.Second, 3 * time.Second, 7 * time.Minute, 13 * time.Hour} {
		l, clk := testLimiter(t, ratelimit.Config{Burst: 2, Refill: refill, BanDuration: time.Millisecond})
		l.SpendPeer("p", ratelimit.Unauthorized)
		clk.Advance(refill / 3)
		l.SpendPeer("p", ratelimit.Unauthorized)
		v := l.SpendPeer("p", ratelimit.Unauthorized)
		if !v.Exhausted {
			t.Fatalf("refill %v: third spend = %+v", refill, v)
		}
		wait := v.Until.Sub(clk.Now())
		ideal := time.Duration((1 - v.Remaining) * float64(refill))
		if wait < ideal || wait > ideal+time.Microsecond {
			t.Fatalf("refill %v: banned for %v, want about %v", refill, wait, ideal)
		}
		clk.Advance(wait - time.Nanosecond)
		if !l.PeerBanned("p") {
			t.Fatalf("refill %v: not banned a nanosecond before Until", refill)
		}
		clk.Advance(time.Nanosecond)
		if l.PeerBanned("p") {
			t.Fatalf("refill %v: banned at Until", refill)
		}
		if v := l.SpendPeer("p", ratelimit.Unauthorized); v.Exhausted {
			t.Fatalf("refill %v: first spend after the ban = %+v, want a token", refill, v)
		}
	}
}

// TestDefaultsToleranceAndCutOff pins the promise the defaults make.
func TestDefaultsToleranceAndCutOff(t *testing.T) {
	l, clk := testLimiter(t, ratelimit.Config{})

	// An honest node with a bad day: a burst of 15 timeouts, then a
	// failed handshake every few seconds for a whole day.
	for range 15 {
		if l.SpendPeer("honest", ratelimit.UnansweredAck).Exhausted {
			t.Fatal("honest burst was cut off")
		}
	}
	for i := range 24 * 3600 / 5 {
		clk.Advance(5 * time.Second)
		if l.SpendPeer("honest", ratelimit.FailedHandshake).Exhausted {
			t.Fatalf("honest node cut off after %d sparse spends", i)
		}
	}

	// A hostile node spending ten times a second is out within Burst+3.
	n := 0
	for ; n < 1000 && !l.SpendPeer("hostile", ratelimit.MalformedMessage).Exhausted; n++ {
		clk.Advance(100 * time.Millisecond)
	}
	if n > ratelimit.DefaultBurst+3 {
		t.Fatalf("hostile node cut off after %d spends, want about %d", n, ratelimit.DefaultBurst)
	}
	// And with the default ban it is readmitted with a full bucket.
	clk.Advance(ratelimit.DefaultBanDuration)
	if v := l.SpendPeer("hostile", ratelimit.MalformedMessage); v.Exhausted || !near(v.Remaining, ratelimit.DefaultBurst-1) {
		t.Fatalf("spend after the default ban = %+v, want a full bucket", v)
	}
}

func TestTablesAreIndependent(t *testing.T) {
	l, _ := testLimiter(t, ratelimit.Config{Burst: 1})
	ip := mustAddr(t, "192.0.2.7")
	l.SpendPeer("192.0.2.7", ratelimit.MalformedMessage)
	if v := l.SpendPeer("192.0.2.7", ratelimit.MalformedMessage); !v.Exhausted {
		t.Fatal("peer not exhausted")
	}
	if l.IPBanned(ip) {
		t.Fatal("banning a peer banned an IP")
	}
	if v := l.SpendIP(ip, ratelimit.FailedHandshake); v.Exhausted || !near(v.Remaining, 0) {
		t.Fatalf("first IP spend = %+v, want a fresh bucket", v)
	}
	l.Forgive("192.0.2.7")
	l.SpendIP(ip, ratelimit.FailedHandshake)
	if !l.IPBanned(ip) {
		t.Fatal("IP not banned")
	}
	if l.PeerBanned("192.0.2.7") || l.PeerBanned("other") {
		t.Fatal("banning an IP banned a peer")
	}
	st := l.Stats()
	if st.Peers.Exhaustions != 1 || st.IPs.Exhaustions != 1 ||
		st.Peers.Spent.Total() != 2 || st.IPs.Spent.Total() != 2 ||
		st.Peers.Keys != 0 || st.IPs.Keys != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestForgive(t *testing.T) {
	l, _ := testLimiter(t, ratelimit.Config{Burst: 1})
	for range 2 {
		l.SpendPeer("p", ratelimit.Unauthorized)
		l.SpendIP(mustAddr(t, "2001:db8::1"), ratelimit.UnknownPeer)
	}
	if !l.PeerBanned("p") || !l.IPBanned(mustAddr(t, "2001:db8::1")) {
		t.Fatal("setup: keys not banned")
	}
	l.Forgive("p")
	l.ForgiveIP(mustAddr(t, "2001:db8::ffff")) // same /64
	l.Forgive("never-seen")
	l.ForgiveIP(mustAddr(t, "10.0.0.1"))
	if l.PeerBanned("p") || l.IPBanned(mustAddr(t, "2001:db8::1")) {
		t.Fatal("forgiven keys still banned")
	}
	if v := l.SpendPeer("p", ratelimit.Unauthorized); v.Exhausted || !near(v.Remaining, 0) {
		t.Fatalf("spend after Forgive = %+v, want a full bucket", v)
	}
	if st := l.Stats(); st.IPs.Keys != 0 || st.Peers.Keys != 1 {
		t.Fatalf("keys after Forgive: %+v", st)
	}
}

func TestInvalidReasonStillCharges(t *testing.T) {
	l, _ := testLimiter(t, ratelimit.Config{Burst: 1})
	l.SpendPeer("p", 0)
	if v := l.SpendPeer("p", ratelimit.Reason(200)); !v.Exhausted {
		t.Fatalf("undeclared reasons did not charge: %+v", v)
	}
	if got := l.Stats().Peers.Spent[0]; got != 2 {
		t.Fatalf("slot 0 = %d, want 2", got)
	}
}

func TestStatsCounts(t *testing.T) {
	l, _ := testLimiter(t, ratelimit.Config{Burst: 2})
	want := ratelimit.ReasonCounts{}
	for i, r := range ratelimit.Reasons() {
		for range i + 1 {
			l.SpendPeer("p"+r.String(), r)
			l.SpendIP(mustAddr(t, "198.51.100.1"), r)
			want[r]++
		}
	}
	st := l.Stats()
	if st.Peers.Spent != want || st.IPs.Spent != want {
		t.Fatalf("spent = %v / %v, want %v", st.Peers.Spent, st.IPs.Spent, want)
	}
	// Peers: reasons 3..8 spend 3..8 times on burst 2, each one ban;
	// declined_handshake spends 9 quarter tokens, one ban too.
	// IP: one key, banned at its third spend, never again.
	if st.Peers.Exhaustions != 7 || st.IPs.Exhaustions != 1 {
		t.Fatalf("exhaustions = %d / %d, want 7 / 1", st.Peers.Exhaustions, st.IPs.Exhaustions)
	}
	if st.Peers.Keys != 9 || st.IPs.Keys != 1 || st.Peers.Evictions != 0 {
		t.Fatalf("keys/evictions = %+v", st)
	}
}

// A declined handshake costs a DeclinedShare of a token: an IP absorbs
// DeclinedShare times as many declines as failed handshakes, and a flood of
// them is still cut off.
func TestDeclinedHandshakeIsAShareOfAToken(t *testing.T) {
	const burst = 5
	l, clk := testLimiter(t, ratelimit.Config{Burst: burst, Refill: time.Minute, BanDuration: time.Hour})
	ip := netip.MustParseAddr("192.0.2.7")
	for i := 1; i <= burst*ratelimit.DeclinedShare; i++ {
		v := l.SpendIP(ip, ratelimit.DeclinedHandshake)
		if v.Exhausted {
			t.Fatalf("decline %d of %d exhausted the IP: %+v", i, burst*ratelimit.DeclinedShare, v)
		}
		if want := float64(burst) - float64(i)/ratelimit.DeclinedShare; !near(v.Remaining, want) {
			t.Fatalf("decline %d left %v tokens, want %v", i, v.Remaining, want)
		}
	}
	v := l.SpendIP(ip, ratelimit.DeclinedHandshake)
	if !v.Exhausted || !v.NewlyExhausted || !v.Until.Equal(clk.Now().Add(time.Hour)) || !l.IPBanned(ip) {
		t.Fatalf("the decline past the budget = %+v, banned %v; want a ban of an hour", v, l.IPBanned(ip))
	}
	if got := l.Stats().IPs.Spent[ratelimit.DeclinedHandshake]; got != burst*ratelimit.DeclinedShare+1 {
		t.Fatalf("Spent[declined_handshake] = %d, want %d", got, burst*ratelimit.DeclinedShare+1)
	}

	// A sustained trickle of DeclinedShare declines per Refill is
	// forgiven; one more per Refill is not.
	other := netip.MustParseAddr("192.0.2.8")
	for range 10 * burst {
		for range ratelimit.DeclinedShare {
			if v := l.SpendIP(other, ratelimit.DeclinedHandshake); v.Exhausted {
				t.Fatal("a trickle of DeclinedShare declines per Refill was cut off")
			}
		}
		clk.Advance(time.Minute)
	}
	for i := range 10 * burst {
		banned := false
		for range ratelimit.DeclinedShare + 1 {
			banned = banned || l.SpendIP(other, ratelimit.DeclinedHandshake).Exhausted
		}
		if banned {
			return
		}
		if i == 10*burst-1 {
			t.Fatal("DeclinedShare+1 declines per Refill were never cut off")
		}
		clk.Advance(time.Minute)
	}
}
