package ratelimit

// Stats is a snapshot of a Limiter's counters. The counters only grow (they
// are Prometheus counters), except Keys, which is a gauge. Each field is read
// atomically, but the snapshot as a whole is not taken at one instant.
type Stats struct {
	Peers TableStats // the table keyed by peer ID
	IPs   TableStats // the table keyed by IPv4 address or IPv6 /64
}

// TableStats counts what happened in one table.
type TableStats struct {
	// Spent counts charges per Reason, including those made on keys
	// that were already banned.
	Spent ReasonCounts

	// Exhaustions counts bans: spends that found a bucket empty.
	Exhaustions uint64

	// Keys is the number of keys tracked now, at most MaxKeys. A key is
	// tracked from its first spend until it is forgiven, evicted, or
	// dropped as new keys arrive after its bucket has filled up again.
	Keys int

	// Evictions counts keys dropped to stay within MaxKeys. A steady rise
	// means the table is under pressure, typically from a flood of
	// distinct addresses, and evicted keys are getting a fresh bucket.
	Evictions uint64

	// EvictedBanned counts evictions that lifted a ban early because
	// every key in a shard was banned; it should stay zero outside an
	// attack by many addresses at once.
	EvictedBanned uint64
}
