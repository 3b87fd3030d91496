package ratelimit

import "time"

// Defaults used for the zero fields of a Config. Taken together they make the
// limiter a flood detector, not a reputation system: it tolerates anything an
// honest node plausibly does and cuts off a key that misbehaves continuously.
const (
	// DefaultBurst is how many spends a key with a full bucket absorbs: the
	// next one exhausts it. Twenty covers an honest node's worst ordinary
	// moment, such as a restart that fails a handshake or two while a
	// dozen in-flight messages time out, and it is still small enough that
	// a hostile key is cut off after twenty-one bad acts in quick
	// succession.
	DefaultBurst = 20

	// DefaultRefill is the time to earn one token back. One per second
	// forgives a sustained trickle of up to one bad act per second: far
	// more than an honest node ever produces, and so cheap for a node to
	// absorb (a Noise handshake costs well under a millisecond of CPU)
	// that banning it would buy nothing. Anything faster is a flood and
	// is cut off. A drained bucket is full again after Burst*Refill = 20s.
	DefaultRefill = time.Second

	// DefaultBanDuration is how long an exhausted key is refused at least.
	// It is longer than Burst*Refill (20s), so a key readmitted after a
	// default ban always starts with a full bucket: a ban is a fixed
	// timeout and punishments do not compound.
	DefaultBanDuration = 30 * time.Second

	// DefaultMaxKeys caps each table (peers and IPs separately). A tracked
	// key costs roughly 120 to 180 bytes (BenchmarkMillionKeys), so a full
	// table holds 8 to 12 MiB. BitVMX committees number tens of operators, so the cap never
	// binds in normal use; it is what bounds memory under a flood of
	// distinct addresses or freshly minted keys.
	DefaultMaxKeys = 1 << 16
)

// Config tunes a Limiter. The zero Config is valid: every zero (or negative)
// field takes its default.
type Config struct {
	// Burst is the most tokens a key can hold, and so how many spends in
	// quick succession it absorbs before the next one exhausts it.
	// Default DefaultBurst.
	Burst int

	// Refill is the time to earn one token back, up to Burst. A key that
	// misbehaves no more often than once per Refill is never exhausted.
	// A Refill so long that Burst tokens would take more than about 73
	// years to earn is shortened to that. Default DefaultRefill.
	Refill time.Duration

	// BanDuration is the least time an exhausted key stays refused. The ban
	// lasts until the later of BanDuration and the moment its bucket holds
	// one whole token again (so that the first spend after a ban never
	// bans again at once); with Refill <= BanDuration that is simply
	// BanDuration. Spends on a banned key do not extend the ban. A longer
	// ban than about 73 years is cut to that. Default DefaultBanDuration.
	BanDuration time.Duration

	// MaxKeys caps the keys tracked in each table (peers and IPs
	// separately), so a flood of distinct source addresses or minted keys
	// cannot grow memory. When a table is full the least recently charged
	// key that is not banned is dropped; banned keys are dropped only when
	// nothing else is left. A dropped key starts afresh with a full bucket
	// if it comes back: that is the price of the bound, and it only ever
	// forgives. Default DefaultMaxKeys.
	MaxKeys int

	// Now returns the current time. Tests inject a fake clock; the default
	// is time.Now, whose monotonic reading keeps wall-clock steps from
	// lengthening or shortening bans.
	Now func() time.Time
}

// withDefaults returns c with every unset field filled in.
func (c Config) withDefaults() Config {
	if c.Burst <= 0 {
		c.Burst = DefaultBurst
	}
	if c.Refill <= 0 {
		c.Refill = DefaultRefill
	}
	if c.BanDuration <= 0 {
		c.BanDuration = DefaultBanDuration
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// policy is the immutable part of a Limiter that both tables share.
type policy struct {
	burst    int
	refill   int64 // nanoseconds per token
	capacity int64 // burst*refill: how far back a full bucket's empty instant lies
	ban      int64 // nanoseconds
	now      func() time.Time

	// epoch anchors the nanosecond clock that buckets and bans use. Taking
	// differences from a time.Now reading keeps the monotonic clock in
	// charge, so a wall-clock step cannot shorten or lengthen a ban.
	epoch time.Time
}

func newPolicy(c Config) *policy {
	p := &policy{
		burst:  c.Burst,
		refill: int64(c.Refill),
		ban:    int64(c.BanDuration),
		now:    c.Now,
		epoch:  c.Now(),
	}
	// Saturate rather than overflow for absurd configurations, keeping
	// Burst: a bucket must still hold Burst tokens (cutting its capacity
	// instead left fewer, none at all once Refill alone passed the cap,
	// and the first spend banned). So a refill that would take more than
	// maxCapacity to fill Burst tokens is shortened to what fits, which
	// only ever forgives sooner than asked, and only after more than 73
	// years. A ban longer than maxCapacity is as good as for ever; capped,
	// its end cannot overflow (it wrapped negative and ended the ban at
	// the next token).
	p.burst = int(min(int64(p.burst), maxCapacity))
	p.refill = max(1, min(p.refill, maxCapacity/int64(p.burst)))
	p.capacity = int64(p.burst) * p.refill
	p.ban = min(p.ban, maxCapacity)
	return p
}

// maxCapacity bounds a bucket's capacity and a ban's length (about 73
// years), leaving headroom below MaxInt64 for the arithmetic on instants.
const maxCapacity = 1 << 61

// tick returns the current instant on the policy's clock.
func (p *policy) tick() int64 { return int64(p.now().Sub(p.epoch)) }

// time converts an instant on the policy's clock back to a time.Time.
func (p *policy) time(t int64) time.Time { return p.epoch.Add(time.Duration(t)) }
