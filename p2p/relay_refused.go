package p2p

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// Circuits refused for their destination's sake.
//
// A relay refuses a circuit with PERMISSION_DENIED when its destination is
// cut off there or missing from its allowlist (memberACL.AllowConnect).
// That refusal is the destination's doing, so the source is not charged
// for it: a member cut off at a relay could otherwise have an honest
// member dial it through the relay (it sends it requests naming the
// relay's circuit address as its own) and get it charged for every reply,
// until it was cut off too. But uncharged refusals were unlimited in rate.
//
// So the two ends now keep to an agreement an honest, up-to-date source
// never breaks:
//   - the dialing side remembers a (relay, destination) that was refused
//     PERMISSION_DENIED for relayRefusedTTL and does not ask that relay
//     for a circuit to that destination meanwhile: the gater refuses the
//     circuit address (InterceptAddrDial) and the send fails at once with
//     ErrRelayRefusedDestination. One dial asks each relay once only
//     (oneCircuitPerRelay), however many circuit addresses through it the
//     destination advertised.
//   - the relay grants relayRefusalFree such refusals per (source,
//     destination) and relayRefusedTTL, and relayRefusalFreePerSource per
//     source; past either, a refusal for the destination's sake costs the
//     source an `unauthorized` token like one for its own sake. An honest
//     source asks once per window; the second favour covers one that
//     restarted and forgot, or a DHT dial racing the node's own.
//
// The hostile member cut off at the relay gets at most one refused circuit
// from an honest member per relayRefusedTTL, which is free.

const (
	// relayRefusedTTL is how long the dialing side does not ask a relay
	// again for a destination it refused, and the relay's window for
	// its free refusals. Short, because it is also how long a destination
	// stays unreachable through the relay after the cause of the refusal
	// is gone: a ban ends (30 s by default), or the relay's allowlist
	// catches up with a member just added (it is reachable another way
	// meanwhile, if it has one). A minute keeps that delay small and the
	// free refusals at about one a second per source.
	relayRefusedTTL = time.Minute
	// relayRefusalFree is how many refusals for the destination's sake a
	// relay grants one source for one destination per relayRefusedTTL.
	relayRefusalFree = 2
	// relayRefusalFreePerSource is how many it grants one source per
	// relayRefusedTTL across destinations: more than an honest member
	// sees refused (one per member cut off at the relay or missing from
	// its allowlist), few enough that made-up destinations (each a new
	// pair) do not make the refusals free again.
	relayRefusalFreePerSource = 64
	// maxRelayRefusalKeys bounds the relay's memory of them; forgetting
	// only ever grants a favour sooner.
	maxRelayRefusalKeys = 4096
)

// ErrRelayRefusedDestination is matched (errors.Is) by the error of a dial
// of a peer that a relay refused a circuit to (PERMISSION_DENIED: the peer
// is cut off at the relay or missing from its allowlist) lately: this node
// does not ask that relay for the peer again for a while, as the relay
// expects (docs/security.md §7), and a send with no other way to the peer
// fails at once.
var ErrRelayRefusedDestination = errors.New("a relay refused circuits to the peer lately (PERMISSION_DENIED: the peer is cut off at the relay or not on its allowlist)")

// circuitVia is the key under which the refusals of relay r are kept: the
// circuit address through r, whatever the relay's transport address.
func circuitVia(r peer.ID) ma.Multiaddr {
	return ma.StringCast("/p2p/" + r.String() + "/p2p-circuit")
}

// deniedPrefix is how go-libp2p's circuit client words a relay's
// PERMISSION_DENIED answer to CONNECT (client.connect); its error type is
// unexported.
const deniedPrefix = "error opening relay circuit: PERMISSION_DENIED"

// relayDenied records the relays that refused p in err, a failed dial of
// p, and wraps ErrRelayRefusedDestination into err when one did now or
// lately and the dial had no other way. denied may be nil.
func relayDenied(denied *addrMemory, p peer.ID, err error, log *zap.Logger) error {
	if denied == nil || err == nil {
		return err
	}
	var de *swarm.DialError
	found := false
	if errors.As(err, &de) {
		for _, te := range de.DialErrors {
			if te.Cause == nil || !strings.Contains(te.Cause.Error(), deniedPrefix) {
				continue
			}
			if r, ok := relayOf(te.Address); ok {
				found = true
				denied.add(p, circuitVia(r))
				if log != nil {
					log.Info("relay refused a circuit to the peer: not asking it again for a while",
						zap.Stringer("peer", p), zap.Stringer("relay", r), zap.Duration("for", denied.ttl))
				}
			}
		}
	}
	if found || errors.Is(err, swarm.ErrNoGoodAddresses) && denied.anyFor(p) {
		return fmt.Errorf("%w: %w; this node does not ask that relay for the peer again for %v", err, ErrRelayRefusedDestination, denied.ttl)
	}
	return err
}

// checkDenied is relayDenied for Check's own circuit to p through r,
// dialed outside the swarm: its error is the circuit client's, with no
// address. It also refuses to ask r again while r's refusal is
// remembered; err nil asks whether to dial at all.
func (n *Node) checkDenied(p, r peer.ID, err error) error {
	if err == nil {
		if n.denied.holds(p, circuitVia(r)) {
			return fmt.Errorf("%w; this node does not ask that relay for the peer again for %v", ErrRelayRefusedDestination, n.denied.ttl)
		}
		return nil
	}
	if strings.Contains(err.Error(), deniedPrefix) {
		n.denied.add(p, circuitVia(r))
		return fmt.Errorf("%w: %w", err, ErrRelayRefusedDestination)
	}
	return err
}

// oneCircuitPerRelay is the swarm's dial ranker with at most one circuit
// address per relay: go-libp2p's circuit client asks the relay for a
// circuit once per address dialed (over the one connection to the relay,
// whatever the address's transport part), so a peer advertising many
// addresses through one relay would make one dial of it ask that relay as
// many times, before the first refusal is known. The relay is dialed at
// all its own addresses anyway when the node is not connected to it.
func oneCircuitPerRelay(addrs []ma.Multiaddr) []network.AddrDelay {
	seen := make(map[peer.ID]bool)
	kept := make([]ma.Multiaddr, 0, len(addrs))
	for _, a := range addrs {
		if r, ok := relayOf(a); ok {
			if seen[r] {
				continue
			}
			seen[r] = true
		}
		kept = append(kept, a)
	}
	return swarm.DefaultDialRanker(kept)
}

// refusalFavours are the relay's free refusals for a destination's sake.
type refusalFavours struct {
	pair, source *allowance
}

func newRefusalFavours(now func() time.Time) *refusalFavours {
	return &refusalFavours{
		pair:   newAllowance(relayRefusalFree, relayRefusedTTL, maxRelayRefusalKeys, now),
		source: newAllowance(relayRefusalFreePerSource, relayRefusedTTL, maxRelayRefusalKeys, now),
	}
}

// free takes a favour for a refusal of src's circuit to dest and reports
// whether there was one: one of the pair's, then one of the source's.
func (f *refusalFavours) free(src, dest peer.ID) bool {
	if f == nil {
		return true
	}
	return f.pair.key(string(src)+"\x00"+string(dest)) && f.source.key(string(src))
}

// key takes one of k's favours and reports whether there was one.
func (a *allowance) key(k string) bool {
	return a != nil && !a.l.SpendPeer(k, ratelimit.Unauthorized).Exhausted
}
