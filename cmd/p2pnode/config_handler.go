package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/bitvmx/go-bitvmx-p2p/dht"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// The handler: and dht: sections of the run configuration, their flags,
// and their translation into the library's configurations.

// handlerConfig is the exchange handler's part: how exchanges are resent,
// timed out and disconnected, and what run answers by itself.
type handlerConfig struct {
	ReplyTimeout   time.Duration `yaml:"reply_timeout"`
	MaxAttempts    int           `yaml:"max_attempts"`
	Backoff        backoffConfig `yaml:"backoff"`
	IdleTimeout    time.Duration `yaml:"idle_timeout"` // negative: never
	KeepConnection bool          `yaml:"keep_connection"`
	Linger         time.Duration `yaml:"linger"`
	// MaxConcurrentPerPeer is handler.Config.MaxConcurrentPerPeer; unlike
	// the other numbers, a 0 given is refused rather than the default: it
	// reads as "none at once", which would stop every exchange.
	MaxConcurrentPerPeer givenInt `yaml:"max_concurrent_per_peer"`
	AutoReply            string   `yaml:"auto_reply"` // "" or "echo"
}

// maxConcurrentPerPeer is the most exchanges run dials to one peer at
// once. A peer's handler holds at most its MaxInboxPerPeer of our requests
// and messages (1024 by default, and run does not change it): the
// exchanges past it would only be refused busy, each refusal spending one
// of their attempts.
const maxConcurrentPerPeer = handler.DefaultMaxInboxPerPeer

// givenInt is an int setting that knows whether it was given, in the file
// or as a flag, so that a 0 given can be refused instead of meaning the
// default. It is a pflag.Value and a yaml.Unmarshaler.
type givenInt struct {
	N     int
	Given bool
}

// UnmarshalYAML takes an integer; null is as good as missing.
func (g *givenInt) UnmarshalYAML(n *yaml.Node) error {
	if n.Tag == "!!null" {
		*g = givenInt{}
		return nil
	}
	var v int
	if err := n.Decode(&v); err != nil {
		return err
	}
	*g = givenInt{N: v, Given: true}
	return nil
}

// String is the value, empty when not given (pflag then shows no default).
func (g *givenInt) String() string {
	if !g.Given {
		return ""
	}
	return strconv.Itoa(g.N)
}

// Set takes the flag's value.
func (g *givenInt) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("not an integer: %q", s)
	}
	*g = givenInt{N: v, Given: true}
	return nil
}

// Type names the value in the usage text.
func (g *givenInt) Type() string { return "int" }

// validate checks the handler settings that the general checks of
// runConfig.validate do not cover.
func (c *handlerConfig) validate() error {
	if m := c.MaxConcurrentPerPeer; m.Given && (m.N < 1 || m.N > maxConcurrentPerPeer) {
		return usageErrorf("max-concurrent-per-peer must be between 1 and %d (got %d): how many exchanges run at once with one peer; leave it out for the default, %d",
			maxConcurrentPerPeer, m.N, handler.DefaultMaxConcurrentPerPeer)
	}
	return nil
}

type backoffConfig struct {
	Base time.Duration `yaml:"base"`
	Max  time.Duration `yaml:"max"`
}

// dhtConfig is the experimental DHT's part.
type dhtConfig struct {
	Enabled   bool          `yaml:"enabled"`
	Bootstrap []string      `yaml:"bootstrap"` // multiaddrs ending in /p2p/<id>
	RecordTTL time.Duration `yaml:"record_ttl"`
	Refresh   time.Duration `yaml:"refresh"`
}

// bindHandlerFlags defines the exchange handler's flags.
func bindHandlerFlags(fs *pflag.FlagSet, c *handlerConfig) {
	fs.DurationVar(&c.ReplyTimeout, "reply-timeout", c.ReplyTimeout,
		fmt.Sprintf("how long a request waits for its reply once acked, and the application has to answer one (default %s)", handler.DefaultReplyTimeout))
	bindRetryFlags(fs, c)
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout,
		fmt.Sprintf("disconnect a peer after this long without an exchange (not a relay or member holding a reservation, nor a connection carrying relayed circuits); negative: never (default %s)", handler.DefaultIdleTimeout))
	fs.BoolVar(&c.KeepConnection, "keep-connection", c.KeepConnection,
		"keep a connection after its exchange, for the next ones (default: one connection per exchange)")
	fs.DurationVar(&c.Linger, "linger", c.Linger,
		fmt.Sprintf("after a reply, how long to wait for the responder to close the connection before closing it (default %s)", handler.DefaultLinger))
	fs.Var(&c.MaxConcurrentPerPeer, "max-concurrent-per-peer",
		fmt.Sprintf("exchanges run at once with one peer, 1 to %d; the rest queue, in order (default %d)", maxConcurrentPerPeer, handler.DefaultMaxConcurrentPerPeer))
}

// bindRetryFlags defines the flags of the handler's resends.
func bindRetryFlags(fs *pflag.FlagSet, c *handlerConfig) {
	fs.IntVar(&c.MaxAttempts, "max-attempts", c.MaxAttempts,
		fmt.Sprintf("sends of one message refused busy, lost or not dialed, before the exchange fails (default %d)", handler.DefaultMaxAttempts))
	fs.DurationVar(&c.Backoff.Base, "backoff-base", c.Backoff.Base,
		fmt.Sprintf("wait before the first resend, doubled for each further one (default %s)", handler.DefaultBackoffBase))
	fs.DurationVar(&c.Backoff.Max, "backoff-max", c.Backoff.Max,
		fmt.Sprintf("longest wait between resends (default %s)", handler.DefaultBackoffMax))
}

// bindDHTFlags defines the DHT's flags.
func bindDHTFlags(fs *pflag.FlagSet, c *dhtConfig) {
	fs.BoolVar(&c.Enabled, "dht", c.Enabled, "join the experimental DHT: publish this node's address, find peers by ID")
	bindBootstrapFlag(fs, c, " (default none: this node is a bootstrap node)")
	fs.DurationVar(&c.RecordTTL, "record-ttl", c.RecordTTL,
		fmt.Sprintf("lifetime of this node's DHT record: past it without a refresh the node counts as inactive (default %s)", dht.DefaultRecordTTL))
	fs.DurationVar(&c.Refresh, "record-refresh", c.Refresh, "how often the DHT record is republished (default record-ttl/4)")
}

// bindBootstrapFlag defines --bootstrap; what says what none means.
func bindBootstrapFlag(fs *pflag.FlagSet, c *dhtConfig, none string) {
	fs.StringSliceVar(&c.Bootstrap, "bootstrap", c.Bootstrap,
		"DHT bootstrap `MULTIADDR`s ending in /p2p/<id>, comma-separated or repeated"+none)
}

// validate checks the DHT settings that can be checked without a node.
func (c *dhtConfig) validate() error {
	if len(c.Bootstrap) > 0 && !c.Enabled {
		return usageErrorf("bootstrap peers given but the DHT is off: add --dht (dht.enabled: true)")
	}
	if _, err := c.bootstrapPeers(); err != nil {
		return usageError{err}
	}
	if c.RecordTTL > 0 && c.Refresh >= c.RecordTTL {
		return usageErrorf("record-refresh (%s) must be below record-ttl (%s)", c.Refresh, c.RecordTTL)
	}
	if c.RecordTTL == 0 && c.Refresh >= dht.DefaultRecordTTL {
		return usageErrorf("record-refresh (%s) must be below record-ttl (default %s)", c.Refresh, dht.DefaultRecordTTL)
	}
	return nil
}

// bootstrapPeers parses the bootstrap addresses.
func (c *dhtConfig) bootstrapPeers() ([]peer.AddrInfo, error) {
	if len(c.Bootstrap) == 0 {
		return nil, nil
	}
	infos, err := dht.ParseBootstrap(strings.Join(c.Bootstrap, ","))
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return infos, nil
}

// dhtConfig turns the DHT settings into a dht.Config (bootstrap peers
// parsed; validate has checked them).
func (c *dhtConfig) dhtConfig() (dht.Config, error) {
	boot, err := c.bootstrapPeers()
	return dht.Config{Bootstrap: boot, RecordTTL: c.RecordTTL, Refresh: c.Refresh}, err
}

// handlerConfig turns the handler settings into a handler.Config around
// the node configuration node; zero values stay zero, for the handler's
// defaults.
func (c *handlerConfig) handlerConfig(node p2p.Config) handler.Config {
	return handler.Config{
		Node:           node,
		ReplyTimeout:   c.ReplyTimeout,
		MaxAttempts:    c.MaxAttempts,
		BackoffBase:    c.Backoff.Base,
		BackoffMax:     c.Backoff.Max,
		IdleTimeout:    c.IdleTimeout,
		KeepConnection: c.KeepConnection,
		Linger:         c.Linger,
		// Not given: 0, the handler's default.
		MaxConcurrentPerPeer: c.MaxConcurrentPerPeer.N,
	}
}
