// Package ratelimit decides when a BitVMX peer has misbehaved enough to be
// cut off.
//
// Operators talk to each other over libp2p, and every peer on the allowlist
// is trusted to connect, but a trusted peer may still turn hostile or
// broken. The limiter does not meter traffic; it meters bad behaviour. Each
// suspicious event, such as a failed handshake, a malformed or oversized
// frame, an ack that never came or a message the routing table forbids,
// spends one token from a bucket, and a key whose bucket runs dry is
// exhausted: the caller disconnects it, and the connection gater refuses it
// until its ban ends. One reason, DeclinedHandshake, spends only a
// DeclinedShare of a token, because an honest dialer provokes it whenever
// it holds a wrong address for someone (the p2p layer charges it only a
// few times per IP, since a stranger can fake it). Buckets refill continuously, so an honest node that
// trips over the odd timeout is never cut off, while one that misbehaves
// continuously is cut off after about Burst events.
//
// # Keys
//
// There are two independent tables. The peer table is keyed by peer ID
// (passed as a string, so this package does not depend on libp2p) and
// charges what a proven identity did. The IP table is keyed by address and
// charges what happens before an identity is proven, chiefly failed
// handshakes, and what an unknown key did, since keys cost nothing to mint.
// IPv4-mapped addresses count as IPv4, and IPv6 addresses are charged by
// /64, the block one host normally controls.
//
// # Buckets
//
// Every key has a token bucket holding at most Config.Burst tokens and
// earning one back every Config.Refill. It makes the same decisions as a
// golang.org/x/time/rate.Limiter with rate.Every(Refill) and burst Burst
// charged with AllowN(now, 1), which the tests check against the real thing,
// but it is kept as a single integer instant and updated, without floating
// point, under the lock the table already holds: 8 bytes per key instead of
// 80 with a mutex of their own, and no second lock on the spend path.
//
// # Bans
//
// The spend that finds a bucket empty bans the key until the later of
// Config.BanDuration and the moment one whole token is back; the Verdict
// says so, with the ban's end, and NewlyExhausted is set on that spend only.
// Further spends during the ban are counted in Stats but do not extend it:
// once the key is disconnected they are echoes of what got it banned. When
// the ban ends the bucket has refilled for the whole ban, which with the
// defaults means it is full again. Forgive and ForgiveIP lift a ban at once.
//
// # Memory
//
// Nothing is tracked for a key until it first spends, lookups never create
// state, and each table holds at most Config.MaxKeys keys. A full table
// evicts its least recently charged key that is not banned; keys whose
// buckets have filled up again are dropped as new keys arrive, since they
// behave exactly like untracked ones. An evicted key comes back with a full
// bucket: a flood of distinct addresses can therefore buy forgiveness for
// keys that were not yet banned, but it can never grow memory past the cap.
//
// # Concurrency and cost
//
// A Limiter is safe for concurrent use and runs no goroutine. Each table is
// split into shards with their own locks. PeerBanned and IPBanned, which the
// gater calls on every connection, do not allocate and do not lock at all
// when the key's shard holds no ban. A spend takes one shard lock and
// allocates only when it starts tracking a new key.
package ratelimit
