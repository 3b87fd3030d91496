package dht

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// A peer whose gater refuses this node's IP closes the connection before
// the Noise handshake, and go-libp2p reports that as a bare "failed to
// negotiate security protocol: EOF". The p2p node's own dials report it as
// a *p2p.ClosedAtHandshakeError (Before), which says the IP may be why;
// kad-dht dials on the same host, so its dials (joining, lookups,
// publication) go through dialHost, which asks the node for that mapping,
// logs the refusal, and hands it to the DHT call that caused the dial
// (refusals), whose error then says it.

// dialHost is the node's host as kad-dht sees it: its dials' errors are
// the p2p node's.
type dialHost struct {
	host.Host
	d *DHT
}

// Connect dials ai as the host does.
func (h dialHost) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if err := h.Host.Connect(ctx, ai); err != nil {
		return h.d.dialFailed(ctx, ai.ID, err)
	}
	h.d.reached(ai.ID)
	return nil
}

// NewStream opens a stream as the host does, dialing p if need be.
func (h dialHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, h.d.dialFailed(ctx, p, err)
	}
	h.d.reached(p)
	return s, nil
}

// dialFailed maps err, the error of a dial of p made with ctx, as the p2p
// node maps its own (p2p.Node.DialError), and reports a refusal before the
// handshake: to the DHT call that made the dial, if ctx carries its
// refusals, and in the log.
func (d *DHT) dialFailed(ctx context.Context, p peer.ID, err error) error {
	if ctx.Err() != nil {
		return err
	}
	err = d.node.DialError(p, err)
	ce, ok := errors.AsType[*p2p.ClosedAtHandshakeError](err)
	if !ok {
		return err
	}
	if r, ok := ctx.Value(refusalsKey{}).(*refusals); ok {
		r.add(ce)
	}
	d.refused.Store(&refusedAt{err: ce, at: d.cfg.Now()})
	// One line per refused dial: go-libp2p's dial backoff (from 5s) and
	// the rejoin schedule space them.
	d.log.Info("peer refused this node's connection", zap.Stringer("peer", p), zap.Error(err))
	return err
}

// refusedAt is the latest refusal before the handshake that a dial of the
// DHT met, and when: kad-dht's own work (a refresh of the routing table,
// say) may meet it, and drop the peer from the table, before the call it
// then leaves with nobody to ask.
type refusedAt struct {
	err *p2p.ClosedAtHandshakeError
	at  time.Time
}

// latestRefusalTTL is how long the latest refusal may explain a failed
// call. A refusal that persists is met again within that time, while the
// routing table is empty (rejoinLoop tries at least every
// DefaultMaxRejoinInterval) or as kad-dht's work dials the peer again; an
// older one is likely history, and would make an unrelated failure match
// p2p.ErrClosedAtHandshake.
const latestRefusalTTL = 2 * DefaultMaxRejoinInterval

// reached forgets the latest refusal if p made it: p has taken a stream
// or a connection of ours since, identified itself on a connection (either
// way: identify completes on every new connection), or left the
// allowlist.
func (d *DHT) reached(p peer.ID) {
	if r := d.refused.Load(); r != nil && r.err.Peer == p {
		d.refused.CompareAndSwap(r, nil)
	}
}

// explain returns err, a failed DHT call's, saying which peer refused
// this node's connection before the handshake: one the call's own dials
// met (r), or else the latest one, no older than latestRefusalTTL, which
// may be why the call found nobody to ask (errors.Is
// p2p.ErrClosedAtHandshake then).
func (d *DHT) explain(r *refusals, err error) error {
	if err == nil {
		return nil
	}
	if r != nil {
		if ref := r.refusal(); ref != nil {
			return fmt.Errorf("%w; %w", err, ref)
		}
	}
	if last := d.refused.Load(); last != nil {
		if age := d.cfg.Now().Sub(last.at); age <= latestRefusalTTL {
			return fmt.Errorf("%w; the latest refusal (%s ago): peer %s: %w", err,
				age.Round(time.Millisecond), last.err.Peer, last.err)
		}
	}
	return err
}

// clearBackoff forgets go-libp2p's dial backoff of p, so that the dial
// that follows is made, and fails with what the peer does, not "dial
// backoff": kad-dht dials the bootstrap peers itself when it starts, and
// then connectBootstrap would only learn that an earlier dial failed. The
// p2p node's dials do the same.
func (d *DHT) clearBackoff(p peer.ID) {
	if sw, ok := d.host.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(p)
	}
}

// refusalsKey is the context key of a DHT call's refusals.
type refusalsKey struct{}

// refusals collects the refusals before the handshake that the dials of
// one DHT call (a lookup, a publication) met, for its error to say why it
// found nobody to ask.
type refusals struct {
	mu    sync.Mutex
	first *p2p.ClosedAtHandshakeError
	peers map[peer.ID]struct{} // allowlisted peers only: kad-dht asks no other
}

// withRefusals returns ctx carrying a new refusals.
func withRefusals(ctx context.Context) (context.Context, *refusals) {
	r := &refusals{}
	return context.WithValue(ctx, refusalsKey{}, r), r
}

func (r *refusals) add(ce *p2p.ClosedAtHandshakeError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first == nil {
		r.first = ce
	}
	if r.peers == nil {
		r.peers = make(map[peer.ID]struct{})
	}
	r.peers[ce.Peer] = struct{}{}
}

// refusal names the peer that refused this node's connection before the
// handshake, with its *p2p.ClosedAtHandshakeError, or is nil if none did.
func (r *refusals) refusal() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first == nil {
		return nil
	}
	if n := len(r.peers) - 1; n > 0 {
		return fmt.Errorf("peer %s (and %d more): %w", r.first.Peer, n, r.first)
	}
	return fmt.Errorf("peer %s: %w", r.first.Peer, r.first)
}
