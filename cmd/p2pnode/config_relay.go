package main

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/pflag"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// relayConfig is the relay service of "run" (relay: in the file).
type relayConfig struct {
	Enabled         bool          `yaml:"enabled"`
	MaxReservations int           `yaml:"max_reservations"`
	MaxCircuits     int           `yaml:"max_circuits"`
	CircuitDuration time.Duration `yaml:"circuit_duration"`
	CircuitData     int64         `yaml:"circuit_data"`
}

// bindRelayFlags defines the flags of relaying and NAT traversal.
func bindRelayFlags(fs *pflag.FlagSet, c *runConfig) {
	fs.BoolVar(&c.Relay.Enabled, "relay-enabled", c.Relay.Enabled,
		"be a circuit relay for the allowlisted peers (both ends of every circuit must be members)")
	fs.IntVar(&c.Relay.MaxReservations, "relay-max-reservations", c.Relay.MaxReservations,
		fmt.Sprintf("peers that may hold a reservation on this relay at once (default %d)", p2p.DefaultRelayMaxReservations))
	fs.IntVar(&c.Relay.MaxCircuits, "relay-max-circuits", c.Relay.MaxCircuits,
		fmt.Sprintf("circuits one peer may have open through this relay at once (default %d)", p2p.DefaultRelayMaxCircuits))
	fs.DurationVar(&c.Relay.CircuitDuration, "relay-circuit-duration", c.Relay.CircuitDuration,
		fmt.Sprintf("a circuit through this relay is reset after this long (default %s)", p2p.DefaultRelayCircuitDuration))
	fs.Int64Var(&c.Relay.CircuitData, "relay-circuit-data", c.Relay.CircuitData,
		fmt.Sprintf("a circuit through this relay is reset after this many bytes in either direction (default %d)", int64(p2p.DefaultRelayCircuitData)))
	fs.StringArrayVar(&c.Relays, "relay", c.Relays,
		"member relay `MULTIADDR` ending in /p2p/<id>, repeatable: hold a reservation there and dial peers through it")
	fs.StringVar(&c.Reachability, "reachability", c.Reachability,
		"with relays: private (hold reservations: peers cannot dial this node directly) or public (only dial through them) (default private)")
	fs.BoolVar(&c.HolePunching, "hole-punching", c.HolePunching,
		"upgrade relayed connections to direct ones by hole punching (DCUtR) when both NATs allow it; turns on reuse-port")
}

// validateRelay checks the relay settings that need no node.
func (c *runConfig) validateRelay() error {
	if c.Relay.MaxReservations < 0 || c.Relay.MaxCircuits < 0 || c.Relay.CircuitData < 0 || c.Relay.CircuitDuration < 0 {
		return usageErrorf("relay limits must not be negative")
	}
	if _, err := c.relayAddrs(); err != nil {
		return err
	}
	if _, err := c.reachability(); err != nil {
		return err
	}
	if c.Reachability != "" && len(c.Relays) == 0 {
		return usageErrorf("reachability %q given but no relays: it says how to use them (--relay MULTIADDR)", c.Reachability)
	}
	if c.HolePunching && len(c.Relays) == 0 && !c.Relay.Enabled {
		return usageErrorf("hole-punching needs relays (--relay MULTIADDR): a hole punch upgrades a relayed connection")
	}
	return nil
}

// relayAddrs parses the relays: each a multiaddr ending in /p2p/<id>,
// through a transport, not itself relayed.
func (c *runConfig) relayAddrs() ([]ma.Multiaddr, error) {
	var out []ma.Multiaddr
	for _, s := range c.Relays {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, usageErrorf("relay %q: %v", s, err)
		}
		tpt, id := peer.SplitAddr(a)
		if id == "" || tpt == nil || p2p.IsRelayed(tpt) {
			return nil, usageErrorf("relay %q: want a direct address ending in /p2p/<peer ID>, such as /ip4/10.1.0.1/tcp/4001/p2p/16Uiu2HAm...", s)
		}
		out = append(out, a)
	}
	return out, nil
}

// relaysNotSelf refuses a relay that is the node itself, the peer of key:
// known only once the key is read, so validate cannot, and the node
// refused it only as it started, after "config check" had passed it.
func (c *runConfig) relaysNotSelf(key crypto.PrivKey) error {
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return err
	}
	addrs, err := c.relayAddrs()
	if err != nil {
		return err
	}
	for i, a := range addrs {
		if _, id := peer.SplitAddr(a); id == self {
			return usageErrorf("relay %q is this node itself (the peer ID of key %s)", c.Relays[i], c.Key)
		}
	}
	return nil
}

// reachability parses the reachability setting.
func (c *runConfig) reachability() (network.Reachability, error) {
	switch c.Reachability {
	case "", "private":
		return network.ReachabilityUnknown, nil
	case "public":
		return network.ReachabilityPublic, nil
	default:
		return 0, usageErrorf("reachability %q: want private or public", c.Reachability)
	}
}

// applyRelay sets the relay fields of a p2p.Config (validate has checked them).
func (c *runConfig) applyRelay(pc *p2p.Config) {
	pc.Relay = p2p.RelayService{
		Enabled:         c.Relay.Enabled,
		MaxReservations: c.Relay.MaxReservations,
		MaxCircuits:     c.Relay.MaxCircuits,
		CircuitDuration: c.Relay.CircuitDuration,
		CircuitData:     c.Relay.CircuitData,
	}
	pc.Relays, _ = c.relayAddrs()
	pc.Reachability, _ = c.reachability()
	pc.HolePunching = c.HolePunching
}

// relayExample is the relay part of "p2pnode config example".
const relayExample = `
# Relays and NAT (docs/operations.md, "Relays and NAT"). A node behind NAT
# names member relays: it keeps a reservation on each and peers dial it
# through them; it also dials peers it has no direct address for through
# them. Each is a multiaddr ending in /p2p/<relay's peer ID>, for example:
#   - /ip4/203.0.113.7/tcp/4001/p2p/16Uiu2HAm...
relays: []
# With relays: private (the default: hold reservations, as a node peers
# cannot dial directly) or public (dial through the relays only).
reachability: ""
# Upgrade a relayed connection to a direct one by hole punching (DCUtR)
# when both NATs allow it. Turns on reuse_port.
hole_punching: false
# Be a circuit relay for the allowlisted peers: both ends of every
# reservation and circuit must be members; a refused request costs its
# sender a misbehaviour token.
relay:
  enabled: false
  max_reservations: 128   # peers holding a reservation at once
  max_circuits: 16        # circuits one peer may have open at once
  circuit_duration: 1h    # a circuit is reset after this long...
  circuit_data: 1073741824  # ...or this many bytes either way; the handler redials
`
