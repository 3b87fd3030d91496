package dht

import (
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// Defaults for the zero values of Config.
const (
	DefaultRecordTTL     = time.Hour
	DefaultCacheTTL      = 5 * time.Minute
	DefaultSweepInterval = 10 * time.Second
	// DefaultFirstRefresh is the first republish interval after the first
	// publication; it doubles up to Config.Refresh. The routing table is
	// small when a node joins, so its first record reaches few nodes; the
	// quick republishes place it on the nodes closest to its key once the
	// network has settled.
	DefaultFirstRefresh = time.Second
	// DefaultMaxRejoinInterval caps the backoff between attempts to reach
	// the bootstrap peers while the routing table is empty.
	DefaultMaxRejoinInterval = 30 * time.Second
)

// Config configures a DHT. The zero value is valid: a bootstrap node using
// the p2p node's allowlist.
type Config struct {
	// Bootstrap are the peers to join through. Several may be given; the
	// DHT joins through any that answers and keeps trying them while its
	// routing table is empty. Every one must be on the allowlist. With
	// none, this node is a bootstrap node: it waits for others to join it.
	Bootstrap []peer.AddrInfo
	// Allowlist scopes the DHT: only its peers enter the routing table, are
	// queried, and have their records stored or believed. Default: the p2p
	// node's allowlist, which is what its gater enforces anyway.
	Allowlist *allowlist.List
	// Membership, when set, seals the node records to the members: it
	// returns the membership document in force (gossip.Service.Current),
	// and this node then publishes its record encrypted so that only that
	// document's members can read it, and accepts sealed records only
	// (docs/dht.md, "Sealed records"). It must return the new document by
	// the time the allowlist reports a change of members: the node
	// republishes then, sealed to the new members. Nil: plain signed
	// records, readable by every DHT participant.
	Membership func() *membership.Document
	// RecordTTL is the lifetime of the records this node publishes: a node
	// that has not republished for RecordTTL counts as inactive. Default
	// 1h; at most MaxRecordLifetime.
	RecordTTL time.Duration
	// Refresh is the republish interval. Default RecordTTL/4; it must be
	// below RecordTTL.
	Refresh time.Duration
	// FirstRefresh is the first republish delay after joining; it doubles
	// up to Refresh. Default 1s.
	FirstRefresh time.Duration
	// ExpiredRetention is how long after its expiry a record is still
	// stored and served, so that Find can report its node as inactive
	// (ErrExpired) rather than unknown (ErrNotFound). Default RecordTTL.
	ExpiredRetention time.Duration
	// CacheTTL bounds how long Resolve reuses an address it found, unless
	// the record expires sooner or Invalidate is called. Default 5m.
	CacheTTL time.Duration
	// SweepInterval is how often the routing table is checked for peers the
	// allowlist no longer holds or the rate limiter has banned. Default 10s.
	SweepInterval time.Duration
	// NoPublish joins the network to look peers up but never publishes
	// this node's own record (Publish may still be called). For short-lived
	// tools, such as p2pnode find and send --dht, that borrow an operator's
	// key: their record would replace the running node's, with their own
	// temporary address, until that node republished.
	NoPublish bool
	// NoFindPeerFallback stops Resolve from falling back on kad-dht's
	// FindPeer when a peer has no record. See docs/dht.md.
	NoFindPeerFallback bool
	// Addrs, when set, returns the addresses to publish instead of the
	// host's listen addresses (for example a public address behind NAT).
	Addrs func() []ma.Multiaddr
	// Logger receives the DHT's logs. Default: no logging. kad-dht itself
	// logs through go-log, which this package does not configure.
	Logger *zap.Logger
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults(nodeList *allowlist.List) (Config, error) {
	if c.Allowlist == nil {
		c.Allowlist = nodeList
	}
	if c.RecordTTL <= 0 {
		c.RecordTTL = DefaultRecordTTL
	}
	if c.RecordTTL > MaxRecordLifetime {
		return c, fmt.Errorf("dht: RecordTTL %s exceeds %s", c.RecordTTL, MaxRecordLifetime)
	}
	if c.Refresh <= 0 {
		c.Refresh = c.RecordTTL / 4
	}
	if c.Refresh >= c.RecordTTL {
		return c, fmt.Errorf("dht: Refresh %s must be below RecordTTL %s", c.Refresh, c.RecordTTL)
	}
	if c.FirstRefresh <= 0 {
		c.FirstRefresh = min(DefaultFirstRefresh, c.Refresh)
	}
	if c.ExpiredRetention <= 0 {
		c.ExpiredRetention = c.RecordTTL
	}
	if c.CacheTTL <= 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	for _, ai := range c.Bootstrap {
		if err := ai.ID.Validate(); err != nil {
			return c, fmt.Errorf("%w: %w", ErrNoBootstrap, err)
		}
		if !c.Allowlist.Contains(ai.ID) {
			return c, fmt.Errorf("%w: %s is not on the allowlist", ErrNoBootstrap, ai.ID)
		}
	}
	return c, nil
}

// ParseBootstrap parses a comma-separated list of multiaddrs, each ending in
// /p2p/<peer ID>, as the command line gives them. Addresses of the same peer
// are merged.
func ParseBootstrap(s string) ([]peer.AddrInfo, error) {
	var addrs []ma.Multiaddr
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, err := ma.NewMultiaddr(f)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrNoBootstrap, f, err)
		}
		// Said here, per address: go-libp2p's own error for it names
		// neither the address nor what it lacks.
		if tpt, id := peer.SplitAddr(a); id == "" || tpt == nil {
			return nil, fmt.Errorf("%w: %q: want an address ending in /p2p/<peer ID>, such as /ip4/10.1.0.1/tcp/4001/p2p/16Uiu2HAm...", ErrNoBootstrap, f)
		}
		addrs = append(addrs, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoBootstrap, err)
	}
	return infos, nil
}
