package dht

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"
)

// resolveTimeout bounds one lookup made for Resolve. The lookup is shared by
// every caller resolving the same peer, so no one caller's context governs
// it; each caller still stops waiting when its own context is done.
const resolveTimeout = 30 * time.Second

// Resolver is what the exchange handler needs from the DHT to send to a peer
// given by ID alone; *DHT implements it.
type Resolver interface {
	// Resolve returns addresses of p.
	Resolve(ctx context.Context, p peer.ID) ([]ma.Multiaddr, error)
	// Invalidate forgets what Resolve cached about p, after its address
	// failed.
	Invalidate(p peer.ID)
}

var _ Resolver = (*DHT)(nil)

// Resolve returns p's transport addresses (without /p2p). It answers from
// its cache when it can; otherwise it looks p's record up (Find) and, when p
// has no record at all (or, sealed, none this node can read), asks kad-dht's
// FindPeer, which connects to p (unless Config.NoFindPeerFallback). The addresses found are cached until
// the record expires or Config.CacheTTL passes, whichever is first, and are
// added to the node's peerstore for as long, so a p2p Dial or SendMsg to p
// without an address works too.
//
// When a cached address fails, call Invalidate(p) and Resolve again. An
// inactive peer (expired record) is an error wrapping ErrExpired; see Find
// for the other errors. Concurrent calls for the same peer share one lookup.
func (d *DHT) Resolve(ctx context.Context, p peer.ID) ([]ma.Multiaddr, error) {
	if d.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p == d.host.ID() {
		return d.publishAddrs(), nil
	}
	if !d.cfg.Allowlist.Contains(p) {
		return nil, fmt.Errorf("%w: %s", ErrNotAllowlisted, p)
	}
	if addrs, ok := d.cache.get(p, d.cfg.Now()); ok {
		return addrs, nil
	}
	c, start := d.cache.join(p)
	if start && !d.goFunc(func() { d.resolve(c, p) }) {
		d.cache.finish(p, c, nil, ErrClosed)
	}
	select {
	case <-c.done:
		return slices.Clone(c.addrs), c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Invalidate forgets the cached addresses of p, so that the next Resolve
// looks again. Call it when a cached address failed.
func (d *DHT) Invalidate(p peer.ID) { d.cache.forget(p) }

// resolve does the lookup of call c.
func (d *DHT) resolve(c *resolveCall, p peer.ID) {
	ctx, cancel := context.WithTimeout(d.ctx, resolveTimeout)
	defer cancel()
	now := d.cfg.Now()
	until := now.Add(d.cfg.CacheTTL)
	var addrs []ma.Multiaddr
	r, err := d.Find(ctx, p)
	switch {
	case err == nil && len(r.Addrs) == 0:
		err = fmt.Errorf("%w: %s's record has no address", ErrNotFound, p)
	case err == nil:
		addrs = r.Addrs
		if r.Expires.Before(until) {
			// now plus what is left, not r.Expires itself: a decoded
			// time has no monotonic reading, so a wall clock set back
			// would keep the entry cached past CacheTTL.
			until = now.Add(r.Expires.Sub(now))
		}
	case (errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotRecipient)) && !d.cfg.NoFindPeerFallback:
		addrs, err = d.findPeer(ctx, p)
	}
	if err == nil {
		ttl := until.Sub(now)
		for _, a := range addrs {
			d.node.AddAddr(p, a, ttl)
		}
		d.log.Debug("resolved", zap.Stringer("peer", p), zap.Int("addrs", len(addrs)))
	}
	c.until = until
	d.cache.finish(p, c, addrs, err)
}

// findPeer is the fallback for a peer without a record: kad-dht's FindPeer,
// which only succeeds if it could connect to p (and the gater admitted it).
func (d *DHT) findPeer(ctx context.Context, p peer.ID) ([]ma.Multiaddr, error) {
	qctx, refused := withRefusals(ctx)
	ai, err := d.kad.FindPeer(qctx, p)
	if err != nil {
		return nil, d.explain(refused, fmt.Errorf("%w: %s has no record, and FindPeer failed: %w", ErrNotFound, p, err))
	}
	var addrs []ma.Multiaddr
	for _, a := range ai.Addrs {
		if tpt, _ := peer.SplitAddr(a); len(tpt) > 0 {
			addrs = append(addrs, tpt)
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%w: FindPeer gave no address for %s", ErrNotFound, p)
	}
	return addrs, nil
}

// resolveCache holds resolved addresses and the lookups in flight. It only
// ever holds allowlisted peers, so the allowlist bounds it; peers leaving
// the allowlist are forgotten.
type resolveCache struct {
	mu      sync.Mutex
	entries map[peer.ID]resolved
	flight  map[peer.ID]*resolveCall
}

type resolved struct {
	addrs []ma.Multiaddr
	until time.Time
}

// resolveCall is one lookup in flight; done is closed when addrs and err are
// set.
type resolveCall struct {
	done  chan struct{}
	addrs []ma.Multiaddr
	err   error
	until time.Time
	// forgotten is set by forget while the lookup runs: its result must not
	// be cached, as it may predate what made the caller invalidate.
	forgotten bool
}

func newResolveCache() resolveCache {
	return resolveCache{entries: make(map[peer.ID]resolved), flight: make(map[peer.ID]*resolveCall)}
}

// get returns p's cached addresses if they are still good at now.
func (rc *resolveCache) get(p peer.ID, now time.Time) ([]ma.Multiaddr, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	e, ok := rc.entries[p]
	if !ok {
		return nil, false
	}
	if !now.Before(e.until) {
		delete(rc.entries, p)
		return nil, false
	}
	return slices.Clone(e.addrs), true
}

// join returns the lookup in flight for p, or a new one that the caller must
// start (start is true).
func (rc *resolveCache) join(p peer.ID) (c *resolveCall, start bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if c, ok := rc.flight[p]; ok {
		return c, false
	}
	c = &resolveCall{done: make(chan struct{})}
	rc.flight[p] = c
	return c, true
}

// finish completes c, caching a success unless p was forgotten meanwhile.
func (rc *resolveCache) finish(p peer.ID, c *resolveCall, addrs []ma.Multiaddr, err error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	c.addrs, c.err = addrs, err
	if rc.flight[p] == c {
		delete(rc.flight, p)
	}
	if err == nil && !c.forgotten {
		rc.entries[p] = resolved{addrs: addrs, until: c.until}
	}
	close(c.done)
}

// forget drops p's cached addresses, and marks a lookup in flight so that
// its result is returned to its callers but not cached.
func (rc *resolveCache) forget(p peer.ID) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	delete(rc.entries, p)
	if c, ok := rc.flight[p]; ok {
		c.forgotten = true
		delete(rc.flight, p)
	}
}
