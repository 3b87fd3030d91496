package ratelimit

import (
	"hash/maphash"
	"math/rand/v2"
	"net/netip"
	"time"
)

// Limiter keeps a token bucket per peer ID and per IP and says which keys are
// exhausted. The two tables are independent: charging a peer never affects
// its IP and the reverse. A Limiter is safe for concurrent use, starts no
// goroutine and needs no Close.
type Limiter struct {
	cfg   Config
	peers table[string]
	ips   table[ipKey]

	// The seeds make shard placement unpredictable, so that nobody can
	// pick keys that all land in (and churn) one shard.
	seed       maphash.Seed
	ipk0, ipk1 uint64
}

// Verdict is the outcome of one spend.
type Verdict struct {
	// Exhausted reports that the key is banned: the caller should
	// disconnect it, and the gater will refuse it until Until.
	Exhausted bool

	// Until is when the ban ends; zero when Exhausted is false.
	Until time.Time

	// Remaining is the tokens in the bucket after the spend, fractional
	// because buckets refill continuously. The spend that exhausts a key
	// leaves less than one; a bucket goes on refilling during the ban, so
	// a later spend on a banned key may see more. Exhausted decides.
	Remaining float64

	// NewlyExhausted reports that this very spend exhausted the key, as
	// opposed to landing on a key that was already banned. It is true
	// once per ban, which is when to emit a ConnectionLimit event.
	NewlyExhausted bool
}

// New returns a Limiter for cfg, whose zero fields take their defaults.
func New(cfg Config) *Limiter {
	cfg = cfg.withDefaults()
	p := newPolicy(cfg)
	return &Limiter{
		cfg:   cfg,
		peers: newTable[string](p, cfg.MaxKeys),
		ips:   newTable[ipKey](p, cfg.MaxKeys),
		seed:  maphash.MakeSeed(),
		ipk0:  rand.Uint64(),
		ipk1:  rand.Uint64(),
	}
}

// Config returns the configuration in force, defaults filled in, for example
// to log it at start-up.
func (l *Limiter) Config() Config { return l.cfg }

// SpendPeer charges one token to the peer ID id for reason r. The spend that
// finds the bucket empty bans the key (see Config.BanDuration); spends on a
// banned key report it as exhausted but neither draw on the bucket nor extend
// the ban.
func (l *Limiter) SpendPeer(id string, r Reason) Verdict {
	return l.peers.spend(maphash.String(l.seed, id), id, r)
}

// SpendIP charges one token to the address ip for reason r, as SpendPeer
// does. IPv4-mapped IPv6 addresses count as the IPv4 address they carry, and
// the zone is ignored. IPv6 addresses are charged by /64, because one host
// (or one customer) normally owns a whole /64 and can cycle through it at
// will; the flip side is that hosts sharing a /64 share a bucket, which is
// acceptable since honest nodes rarely spend at all. An invalid ip is not
// charged: the Verdict says so with a full bucket.
func (l *Limiter) SpendIP(ip netip.Addr, r Reason) Verdict {
	k, h, ok := l.keyIP(ip)
	if !ok {
		return Verdict{Remaining: float64(l.cfg.Burst)}
	}
	return l.ips.spend(h, k, r)
}

// PeerBanned reports whether the peer ID id is refused now. The gater calls
// it on every connection: it does not allocate, never starts tracking id,
// and takes no lock unless id's shard holds a ban.
func (l *Limiter) PeerBanned(id string) bool {
	return l.peers.isBanned(maphash.String(l.seed, id), id)
}

// IPBanned reports whether ip (normalised as in SpendIP) is refused now, at
// the same cost as PeerBanned. An invalid ip is never banned.
func (l *Limiter) IPBanned(ip netip.Addr) bool {
	k, h, ok := l.keyIP(ip)
	if !ok {
		return false
	}
	return l.ips.isBanned(h, k)
}

// Forgive drops everything known about the peer ID id: an operator's
// override that lifts a ban and refills the bucket at once.
func (l *Limiter) Forgive(id string) {
	l.peers.forgive(maphash.String(l.seed, id), id)
}

// ForgiveIP is Forgive for an address; for IPv6 it forgives the whole /64.
func (l *Limiter) ForgiveIP(ip netip.Addr) {
	if k, h, ok := l.keyIP(ip); ok {
		l.ips.forgive(h, k)
	}
}

// Stats returns the limiter's counters. It reads atomics only, so it is
// cheap enough for every metrics scrape and never blocks a spend.
func (l *Limiter) Stats() Stats {
	var s Stats
	l.peers.stats(&s.Peers)
	l.ips.stats(&s.IPs)
	return s
}
