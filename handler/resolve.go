package handler

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Resolver finds the addresses of a peer, for example in a DHT. The handler
// calls it, from a goroutine of its own and with a deadline, when Request or
// Send was given no address for a peer that is not connected and whose
// address it has not cached, and once more when a dial to a cached or
// resolved address fails. It must be safe for concurrent use.
type Resolver interface {
	Resolve(ctx context.Context, p peer.ID) ([]ma.Multiaddr, error)
}

// resolveResult is a Resolve call's answer, posted back to the loop.
type resolveResult struct {
	ex    *exchange
	addrs []ma.Multiaddr
	err   error
}

// resolve asks the Resolver for ex's peer; the answer arrives as a
// resolveResult. The goroutine is the handler's: Close cancels its context
// and waits for it.
func (h *Handler) resolve(ex *exchange) {
	ex.state = StateResolving
	r, p := h.resolver, ex.p.id
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(h.ctx, h.cfg.ResolveTimeout)
		defer cancel()
		addrs, err := r.Resolve(ctx, p)
		select {
		case h.resolved <- resolveResult{ex: ex, addrs: addrs, err: err}:
		case <-h.ctx.Done():
		}
	}()
}

// onResolved continues an exchange that waited for the Resolver.
func (h *Handler) onResolved(r resolveResult) {
	ex := r.ex
	if ex.state != StateResolving {
		return // ended meanwhile (closed, cut off)
	}
	var addrs []ma.Multiaddr
	for _, a := range r.addrs {
		if t, err := transportAddr(ex.p.id, a); err == nil {
			addrs = append(addrs, t)
		}
	}
	if r.err == nil && len(addrs) == 0 {
		r.err = fmt.Errorf("no usable address for %s", ex.p.id)
	}
	if r.err != nil {
		err := fmt.Errorf("handler: resolve %s: %w", ex.p.id, r.err)
		// With no address known (none was given, cached or resolved:
		// the earlier sends went on a connection the peer opened), a
		// backoff only asks the Resolver again, with no send counted:
		// those lookups are bounded as sends are.
		ex.lookups++
		if ex.attempts == 0 || ex.attempts >= h.cfg.MaxAttempts || ex.addr == nil && ex.lookups >= h.cfg.MaxAttempts {
			h.end(ex, ReasonDialFailed, err)
			return
		}
		// A failed re-resolution leaves the known address: retry it.
		ex.lastReason, ex.lastErr = ReasonDialFailed, err
		h.backoff(ex)
		return
	}
	ex.addr, ex.extra = addrs[0], addrs[1:]
	h.addrs[ex.p.id] = addrs[0]
	h.transmit(ex)
}

// addrCache remembers the last address transportAddr split: an
// application that sends to the same /p2p address again and again (the
// usual case) then costs no allocation to split it.
type addrCache struct{ last atomic.Pointer[splitAddr] }

type splitAddr struct {
	p         peer.ID
	full, tpt ma.Multiaddr
}

// transport is transportAddr, remembering its last answer.
func (c *addrCache) transport(p peer.ID, a ma.Multiaddr) (ma.Multiaddr, error) {
	if s := c.last.Load(); s != nil && s.p == p && s.full.Equal(a) {
		return s.tpt, nil
	}
	tpt, err := transportAddr(p, a)
	if err == nil && a != nil {
		c.last.Store(&splitAddr{p: p, full: a, tpt: tpt})
	}
	return tpt, err
}

// transportAddr strips /p2p/<id> from a, which must name p if it names
// anyone.
func transportAddr(p peer.ID, a ma.Multiaddr) (ma.Multiaddr, error) {
	if a == nil {
		return nil, nil
	}
	tpt := a
	if last := len(a) - 1; last < 0 || a[last].Code() == ma.P_P2P {
		var id peer.ID
		tpt, id = peer.SplitAddr(a)
		if id != "" && id != p {
			return nil, fmt.Errorf("handler: address %s belongs to %s, not %s", a, id, p)
		}
		if tpt == nil {
			return nil, fmt.Errorf("handler: address %s has no transport part", a)
		}
	}
	if !dialable(tpt) {
		// Refused here rather than dialed MaxAttempts times to fail
		// dial_failed: no attempt could go through.
		return nil, fmt.Errorf("handler: address %s: this node dials only TCP (/ip4, /ip6 or /dns.../tcp/PORT), or through a relay (/p2p-circuit)", a)
	}
	return tpt, nil
}

// dialable reports whether a transport address is one the node's host can
// dial: it ends in /tcp/PORT, or goes through a circuit relay.
func dialable(tpt ma.Multiaddr) bool {
	for _, c := range tpt {
		if c.Code() == ma.P_CIRCUIT {
			return true
		}
	}
	return len(tpt) > 0 && tpt[len(tpt)-1].Code() == ma.P_TCP
}
