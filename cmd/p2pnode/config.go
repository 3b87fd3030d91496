package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// minStoreSize is the least max_store_size, 16 MiB. The cap counts the
// disk pebble's own files take (write-ahead logs preallocated and kept for
// reuse, the MANIFEST): 1.2 MB to 3.3 MB at this size, measured; below it
// they, and a few messages of the default max_message_size, would fill it.
// (The least was 1 MiB when the cap did not count them, and a store capped
// at 1 MiB took 13.5 MB.)
const minStoreSize = 16 << 20

// runConfig is everything "p2pnode run" takes. It is read from the --config
// file, then every flag given on the command line overrides its field. A
// zero value means "the default": the p2p package's for the node settings
// (so that the CLI and the library cannot disagree on them), warn and
// console for logging, off for the rest.
//
// The YAML keys are the field tags; "p2pnode config example" prints a
// commented file. Relative paths in a file are resolved against the file's
// directory, so a config directory can be moved as a whole.
type runConfig struct {
	Key       string   `yaml:"key"`
	Listen    []string `yaml:"listen"`
	Allowlist string   `yaml:"allowlist"`
	// Membership names a membership document (docs/membership.md), used
	// instead of Allowlist: the node admits its members and follows the
	// versions the members agree on.
	Membership  string          `yaml:"membership"`
	Routes      string          `yaml:"routes"`
	Watch       bool            `yaml:"watch"`
	JSON        bool            `yaml:"json"`
	NoStdin     bool            `yaml:"no_stdin"`
	ReusePort   bool            `yaml:"reuse_port"`
	RateLimit   rateLimitConfig `yaml:"rate_limit"`
	Timeouts    timeoutsConfig  `yaml:"timeouts"`
	MaxMessage  int             `yaml:"max_message_size"`
	MaxInFlight int             `yaml:"max_in_flight"`
	SendQueue   int             `yaml:"send_queue"`
	StreamsPer  int             `yaml:"streams_per_peer"`
	Buffers     buffersConfig   `yaml:"buffers"`
	MetricsAddr string          `yaml:"metrics_addr"`
	Log         logConfig       `yaml:"log"`
	Handler     handlerConfig   `yaml:"handler"`
	DHT         dhtConfig       `yaml:"dht"`
	// Relay, Relays, Reachability and HolePunching: config_relay.go.
	Relay        relayConfig `yaml:"relay"`
	Relays       []string    `yaml:"relays"`
	Reachability string      `yaml:"reachability"`
	HolePunching bool        `yaml:"hole_punching"`
	// DataDir holds the node's store (exchanges in flight, received ones
	// not yet handled, dead letters); empty: the default, under
	// $XDG_STATE_HOME (or ~/.local/state)/p2pnode/<peer ID>.
	DataDir string `yaml:"data_dir"`
	// MaxStoreSize caps the store's disk use, in bytes
	// (store.Options.MaxBytes); 0: store.DefaultMaxBytes.
	MaxStoreSize int64 `yaml:"max_store_size"`
	// Ephemeral runs without a store: a restart forgets everything in
	// flight.
	Ephemeral bool `yaml:"ephemeral"`
	// API is the control socket's path; empty: control.sock in the data
	// directory (none when ephemeral); "off": none (control_server.go).
	API string `yaml:"api"`
}

type rateLimitConfig struct {
	Burst  int           `yaml:"burst"`
	Refill time.Duration `yaml:"refill"`
	Ban    time.Duration `yaml:"ban"`
}

type timeoutsConfig struct {
	Ack   time.Duration `yaml:"ack"`
	Read  time.Duration `yaml:"read"`
	Write time.Duration `yaml:"write"`
	Dial  time.Duration `yaml:"dial"`
	// Handshake bounds a peer's inbound handshake (p2p.Config.HandshakeTimeout).
	Handshake time.Duration `yaml:"handshake"`
	// AckDelay may be negative: acks are then never held.
	AckDelay time.Duration `yaml:"ack_delay"`
	// StreamIdle may be negative: streams are then never closed for idling.
	StreamIdle time.Duration `yaml:"stream_idle"`
}

type buffersConfig struct {
	Receiver int `yaml:"receiver"`
	Priority int `yaml:"priority"`
	Sender   int `yaml:"sender"`
}

type logConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// bindRunFlags defines the flags of "run" on fs, bound to c's fields. Each
// flag's default is the field's current value: binding a fresh flag set to
// a loaded file therefore changes nothing, which is what overlayFlags
// relies on.
func bindRunFlags(fs *pflag.FlagSet, c *runConfig) {
	bindIdentityFlags(fs, c)
	bindHandlerFlags(fs, &c.Handler)
	bindDHTFlags(fs, &c.DHT)
	bindRelayFlags(fs, c)
	fs.StringVar(&c.Handler.AutoReply, "auto-reply", c.Handler.AutoReply, "answer every request by itself: echo (reply with its payload); default off")
	bindStoreFlags(fs, c)
	bindAPIFlag(fs, c)
	fs.StringVar(&c.Routes, "routes", c.Routes, "routing table YAML `FILE`: which peer channel may reach which local channel (default: all)")
	fs.BoolVar(&c.Watch, "watch", c.Watch, "also reload the allowlist and routes files whenever they change on disk")
	fs.BoolVar(&c.JSON, "json", c.JSON, "print one JSON object per event instead of text")
	fs.BoolVar(&c.NoStdin, "no-stdin", c.NoStdin, "ignore stdin and run until SIGINT or SIGTERM (the default when stdin is not a pipe, socket, terminal or file, e.g. /dev/null)")
	fs.BoolVar(&c.ReusePort, "reuse-port", c.ReusePort, "dial out from the listening port (multi-homed hosts)")
	fs.IntVar(&c.RateLimit.Burst, "rate-burst", c.RateLimit.Burst,
		fmt.Sprintf("misbehaviour tokens per peer and per IP before it is cut off (default %d)", ratelimit.DefaultBurst))
	fs.DurationVar(&c.RateLimit.Refill, "rate-refill", c.RateLimit.Refill,
		fmt.Sprintf("time to earn one misbehaviour token back (default %s)", ratelimit.DefaultRefill))
	fs.DurationVar(&c.RateLimit.Ban, "rate-ban", c.RateLimit.Ban,
		fmt.Sprintf("least time a cut-off peer or IP is refused (default %s)", ratelimit.DefaultBanDuration))
	fs.DurationVar(&c.Timeouts.Ack, "ack-timeout", c.Timeouts.Ack,
		fmt.Sprintf("how long a sent message waits for its ack (default %s)", p2p.DefaultAckTimeout))
	fs.DurationVar(&c.Timeouts.Read, "read-timeout", c.Timeouts.Read,
		fmt.Sprintf("how long a frame may take to arrive (default %s)", p2p.DefaultReadTimeout))
	fs.DurationVar(&c.Timeouts.Write, "write-timeout", c.Timeouts.Write,
		fmt.Sprintf("how long one write to a peer may take (default %s)", p2p.DefaultWriteTimeout))
	fs.DurationVar(&c.Timeouts.Dial, "dial-timeout", c.Timeouts.Dial,
		fmt.Sprintf("how long connecting to a peer may take (default %s)", p2p.DefaultDialTimeout))
	fs.DurationVar(&c.Timeouts.Handshake, "handshake-timeout", c.Timeouts.Handshake,
		fmt.Sprintf("how long a peer's connection to this node may take to be ready, its handshake included; slower ones are cut and charged (default %s)", p2p.DefaultHandshakeTimeout))
	fs.DurationVar(&c.Timeouts.AckDelay, "ack-delay", c.Timeouts.AckDelay,
		fmt.Sprintf("how long the ack of a request may wait to leave with its reply (default %s, at most %s; negative: never)", p2p.DefaultAckDelay, p2p.MaxAckDelay))
	fs.DurationVar(&c.Timeouts.StreamIdle, "stream-idle-timeout", c.Timeouts.StreamIdle,
		fmt.Sprintf("how long a message stream may carry nothing before it is closed; the connection stays (default %s; negative: never)", p2p.DefaultStreamIdleTimeout))
	fs.IntVar(&c.MaxMessage, "max-message-size", c.MaxMessage,
		fmt.Sprintf("largest message sent or accepted, in bytes (default %d)", p2p.DefaultMaxMessageSize))
	fs.IntVar(&c.MaxInFlight, "max-in-flight", c.MaxInFlight,
		fmt.Sprintf("sent messages per peer awaiting their ack at once (default %d)", p2p.DefaultMaxInFlight))
	fs.IntVar(&c.SendQueue, "send-queue", c.SendQueue,
		fmt.Sprintf("messages per peer waiting to be sent (default %d)", p2p.DefaultSendQueue))
	fs.IntVar(&c.StreamsPer, "streams-per-peer", c.StreamsPer,
		fmt.Sprintf("inbound message streams one peer may hold open (default %d)", p2p.DefaultStreamsPerPeer))
	fs.IntVar(&c.Buffers.Receiver, "receiver-buffer", c.Buffers.Receiver,
		fmt.Sprintf("events buffered for output (default %d)", p2p.DefaultReceiverBuffer))
	fs.IntVar(&c.Buffers.Priority, "priority-buffer", c.Buffers.Priority,
		fmt.Sprintf("priority alerts buffered for output (default %d)", p2p.DefaultPriorityBuffer))
	fs.IntVar(&c.Buffers.Sender, "sender-buffer", c.Buffers.Sender,
		fmt.Sprintf("stdin commands buffered for the node (default %d)", p2p.DefaultSenderBuffer))
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "serve Prometheus metrics on `HOST:PORT` at /metrics (default off)")
}

// bindIdentityFlags defines the flags every command that runs a node has:
// who it is, whom it admits, where it listens.
func bindIdentityFlags(fs *pflag.FlagSet, c *runConfig) {
	fs.StringVar(&c.Key, "key", c.Key, "identity key `FILE` (mode 0600), from p2pnode keygen")
	fs.StringArrayVar(&c.Listen, "listen", c.Listen, "`MULTIADDR` to listen on, repeatable (default "+p2p.DefaultListenAddr+")")
	fs.StringVar(&c.Allowlist, "allowlist", c.Allowlist, "allowlist YAML `FILE`: who may connect")
	fs.StringVar(&c.Membership, "membership", c.Membership,
		"membership document `FILE` (docs/membership.md), instead of --allowlist: who may connect, changed only by M of N operators; with --dht, DHT records are sealed to the members")
}

// bindStoreFlags defines --data-dir, --max-store-size and --ephemeral.
func bindStoreFlags(fs *pflag.FlagSet, c *runConfig) {
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir,
		"`DIR` of the node's store, kept across restarts (default $XDG_STATE_HOME/p2pnode/<peer ID>, or ~/.local/state/p2pnode/<peer ID>)")
	fs.Int64Var(&c.MaxStoreSize, "max-store-size", c.MaxStoreSize,
		fmt.Sprintf("most disk the store may use, in bytes, as du counts its directory: when full, new sends and requests fail and received messages are answered busy; "+
			"compacting a full store may take up to as much again for a while (default %d, at least %d)", store.DefaultMaxBytes, minStoreSize))
	fs.BoolVar(&c.Ephemeral, "ephemeral", c.Ephemeral, "run without a store: a restart forgets the exchanges in flight")
}

// bindLogFlags defines --log-level and --log-format. They are global flags
// of the root command, and part of the run configuration too.
func bindLogFlags(fs *pflag.FlagSet, c *logConfig) {
	fs.StringVar(&c.Level, "log-level", c.Level, "log `LEVEL` on stderr: debug, info, warn or error (default warn)")
	fs.StringVar(&c.Format, "log-format", c.Format, "log `FORMAT` on stderr: console or json (default console)")
}

// overlayFlags applies to c every flag that was set on the command line in
// changed. It binds a scratch flag set to c and replays the changed flags
// into it, so each flag is parsed by the very code that parsed it the first
// time and no field can be forgotten in a hand-written copy.
func overlayFlags(c *runConfig, changed *pflag.FlagSet) error {
	dst := pflag.NewFlagSet("overlay", pflag.ContinueOnError)
	bindRunFlags(dst, c)
	bindLogFlags(dst, &c.Log)
	var err error
	changed.Visit(func(f *pflag.Flag) {
		d := dst.Lookup(f.Name)
		if d == nil || err != nil {
			return // a flag that is not configuration, such as --config
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			err = d.Value.(pflag.SliceValue).Replace(sv.GetSlice())
			return
		}
		err = d.Value.Set(f.Value.String())
	})
	return err
}

// loadConfigFile reads a run configuration file. Unknown keys are errors
// (a misspelt "max_mesage_size" must not silently mean the default), and
// errors name the file and line.
func loadConfigFile(path string) (runConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return runConfig{}, fmt.Errorf("config: %w", err)
	}
	c, err := parseConfig(data)
	if err != nil {
		// What the file says is wrong, as a flag would be: a usage error.
		return runConfig{}, usageErrorf("config %s: %w", path, err)
	}
	c.resolvePaths(filepath.Dir(path))
	return c, nil
}

// parseConfig decodes a configuration document strictly. An empty document
// is the zero configuration.
func parseConfig(data []byte) (runConfig, error) {
	var c runConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return runConfig{}, yamlErr(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return runConfig{}, errors.New("only one YAML document is allowed")
	}
	return c, nil
}

var (
	yamlNotFound = regexp.MustCompile(`field (\S+) not found in type \S+`)
	yamlIntoType = regexp.MustCompile(` into main\.\w+`)
)

// yamlErr rewrites a YAML decoding error for an operator: one line, and no
// Go type names ("field foo not found in type main.runConfig" becomes
// `unknown key "foo"`).
func yamlErr(err error) error {
	var msgs []string
	if te, ok := errors.AsType[*yaml.TypeError](err); ok {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	for i, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		m = yamlNotFound.ReplaceAllString(m, `unknown key "$1"`)
		m = yamlIntoType.ReplaceAllString(m, "")
		msgs[i] = m
	}
	return errors.New(strings.Join(msgs, "; "))
}

// resolvePaths makes the file paths of a configuration read from dir
// relative to dir rather than to the working directory.
func (c *runConfig) resolvePaths(dir string) {
	for _, p := range []*string{&c.Key, &c.Allowlist, &c.Membership, &c.Routes, &c.DataDir, &c.API} {
		if *p != "" && *p != apiOff && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// validate checks that the required files are named and that no number or
// duration is negative: p2p would read a negative value as "default", but it
// is a mistake, not a wish for the default.
func (c *runConfig) validate() error {
	if c.Key == "" {
		return usageErrorf("no identity key: give --key FILE or key: in --config")
	}
	if c.Allowlist == "" && c.Membership == "" {
		return usageErrorf("no allowlist: give --allowlist FILE or allowlist: in --config (or --membership FILE)")
	}
	return c.validateValues()
}

// validateValues checks every value that needs no file: numbers,
// durations, addresses, log settings, and that at most one source of
// members is given. "config check" and run share it.
func (c *runConfig) validateValues() error {
	if c.Allowlist != "" && c.Membership != "" {
		return usageErrorf("both an allowlist and a membership document given: a node uses one or the other")
	}
	ints := []struct {
		name string
		v    int
	}{
		{"rate-burst", c.RateLimit.Burst}, {"max-message-size", c.MaxMessage},
		{"max-in-flight", c.MaxInFlight}, {"send-queue", c.SendQueue},
		{"streams-per-peer", c.StreamsPer}, {"receiver-buffer", c.Buffers.Receiver},
		{"priority-buffer", c.Buffers.Priority}, {"sender-buffer", c.Buffers.Sender},
	}
	for _, f := range ints {
		if f.v < 0 {
			return usageErrorf("%s must not be negative (got %d)", f.name, f.v)
		}
	}
	durs := []struct {
		name string
		v    time.Duration
	}{
		{"rate-refill", c.RateLimit.Refill}, {"rate-ban", c.RateLimit.Ban},
		{"ack-timeout", c.Timeouts.Ack}, {"read-timeout", c.Timeouts.Read},
		{"write-timeout", c.Timeouts.Write}, {"dial-timeout", c.Timeouts.Dial},
		{"handshake-timeout", c.Timeouts.Handshake},
		{"reply-timeout", c.Handler.ReplyTimeout}, {"backoff-base", c.Handler.Backoff.Base},
		{"backoff-max", c.Handler.Backoff.Max}, {"record-ttl", c.DHT.RecordTTL},
		{"record-refresh", c.DHT.Refresh},
	}
	for _, f := range durs {
		if f.v < 0 {
			return usageErrorf("%s must not be negative (got %s)", f.name, f.v)
		}
	}
	if c.Timeouts.AckDelay > p2p.MaxAckDelay {
		return usageErrorf("ack-delay must be at most %s (got %s)", p2p.MaxAckDelay, c.Timeouts.AckDelay)
	}
	if v := c.Timeouts.StreamIdle; v > 0 && v < p2p.MinStreamIdleTimeout {
		return usageErrorf("stream-idle-timeout must be at least %s, or negative for never (got %s)", p2p.MinStreamIdleTimeout, v)
	}
	if c.Handler.MaxAttempts < 0 {
		return usageErrorf("max-attempts must not be negative (got %d)", c.Handler.MaxAttempts)
	}
	if err := c.Handler.validate(); err != nil {
		return err
	}
	if c.Ephemeral && c.DataDir != "" {
		return usageErrorf("data-dir %q given but ephemeral is set: give one of --data-dir and --ephemeral", c.DataDir)
	}
	switch v := c.MaxStoreSize; {
	case v < 0:
		return usageErrorf("max-store-size must not be negative (got %d)", v)
	case v > 0 && v < minStoreSize:
		return usageErrorf("max-store-size must be at least %d bytes (16 MiB), or 0 for the default (got %d)", minStoreSize, v)
	case v > 0 && c.Ephemeral:
		return usageErrorf("max-store-size given but ephemeral is set: an ephemeral node has no store")
	}
	switch c.Handler.AutoReply {
	case "", "echo":
	default:
		return usageErrorf("auto-reply %q: want echo (or nothing, to answer requests from stdin)", c.Handler.AutoReply)
	}
	if err := c.Log.validate(); err != nil {
		return err
	}
	if err := validateMetricsAddr(c.MetricsAddr); err != nil {
		return err
	}
	if _, err := parseListenAddrs(c.Listen); err != nil {
		return err
	}
	if err := c.validateRelay(); err != nil {
		return err
	}
	return c.DHT.validate()
}

// nodeConfig turns the settings into a p2p.Config. The identity key,
// allowlist, routes and logger are loaded by the caller; zero values are
// left zero so that p2p applies its own defaults.
func (c *runConfig) nodeConfig() p2p.Config {
	pc := p2p.Config{
		RateLimit: ratelimit.Config{
			Burst:       c.RateLimit.Burst,
			Refill:      c.RateLimit.Refill,
			BanDuration: c.RateLimit.Ban,
		},
		MaxMessageSize:    c.MaxMessage,
		AckTimeout:        c.Timeouts.Ack,
		ReadTimeout:       c.Timeouts.Read,
		WriteTimeout:      c.Timeouts.Write,
		DialTimeout:       c.Timeouts.Dial,
		HandshakeTimeout:  c.Timeouts.Handshake,
		AckDelay:          c.Timeouts.AckDelay,
		MaxInFlight:       c.MaxInFlight,
		StreamIdleTimeout: c.Timeouts.StreamIdle,
		SendQueue:         c.SendQueue,
		StreamsPerPeer:    c.StreamsPer,
		ReceiverBuffer:    c.Buffers.Receiver,
		PriorityBuffer:    c.Buffers.Priority,
		SenderBuffer:      c.Buffers.Sender,
		ReusePort:         c.ReusePort,
	}
	c.applyRelay(&pc)
	return pc
}
