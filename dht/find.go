package dht

import (
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	"go.uber.org/zap"
)

// Find looks p's record up in the DHT and returns the newest one that
// verifies: signed by p's key, about p, well formed. If that record has
// expired, p counts as inactive: Find returns the record (its Addrs are the
// last p announced) together with an error wrapping ErrExpired.
//
// Errors: ErrNotAllowlisted (p is not on the allowlist; nothing is asked),
// ErrNotReady (the routing table is empty), ErrNotFound (no valid record),
// ErrExpired, ErrClosed, or the context's error. A lookup that failed, or
// found the routing table empty, says which peer refused this node's
// connection before the handshake, if one it asked did, or else the latest
// one that did within the last minute (a peer connected since,
// or no longer allowlisted, does not count): its error also matches
// p2p.ErrClosedAtHandshake then.
func (d *DHT) Find(ctx context.Context, p peer.ID) (Record, error) {
	if d.ctx.Err() != nil {
		return Record{}, ErrClosed
	}
	self := p == d.host.ID()
	if !self && !d.cfg.Allowlist.Contains(p) {
		return Record{}, fmt.Errorf("%w: %s", ErrNotAllowlisted, p)
	}
	if !self && d.kad.RoutingTable().Size() == 0 {
		return Record{}, d.explain(nil, fmt.Errorf("%w: cannot look %s up", ErrNotReady, p))
	}
	key := RecordKey(p)
	qctx, refused := withRefusals(ctx)
	val, err := d.kad.GetValue(qctx, key)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return Record{}, fmt.Errorf("dht: find %s: %w", p, ctx.Err())
	case d.ctx.Err() != nil:
		return Record{}, ErrClosed
	case errors.Is(err, routing.ErrNotFound):
		return Record{}, d.explain(refused, fmt.Errorf("%w: no record of %s", ErrNotFound, p))
	default:
		return Record{}, d.explain(refused, fmt.Errorf("dht: find %s: %w", p, err))
	}
	// kad-dht validated the record as it arrived; verifying it again here
	// makes Find's guarantee independent of that.
	r, err := d.val.verify(key, val)
	if err != nil {
		if errors.Is(err, ErrExpired) {
			// Expired past the retention while in flight: as good as gone.
			return Record{}, fmt.Errorf("%w: %s: %w", ErrNotFound, p, err)
		}
		return Record{}, fmt.Errorf("dht: find %s: %w", p, err)
	}
	if d.cfg.Membership != nil {
		var uerr error
		if r, uerr = d.unseal(p, r, val); uerr != nil {
			return Record{}, fmt.Errorf("dht: find %s: %w", p, uerr)
		}
	}
	if now := d.cfg.Now(); r.Expired(now) {
		d.log.Info("peer inactive: its record expired",
			zap.Stringer("peer", p), zap.Time("expired", r.Expires), zap.Duration("age", r.Age(now)))
		return r, fmt.Errorf("%w: %s's record expired %s ago", ErrExpired, p, now.Sub(r.Expires).Round(1e6))
	}
	return r, nil
}
