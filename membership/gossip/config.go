package gossip

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// ProtocolID is the libp2p protocol of a membership session.
const ProtocolID protocol.ID = "/bitvmx/membership/1.0.0"

// Host is what the service needs of a libp2p host; host.Host (and so
// p2p.Node.Host()) satisfies it.
type Host interface {
	ID() peer.ID
	Network() network.Network
	SetStreamHandler(protocol.ID, network.StreamHandler)
	RemoveStreamHandler(protocol.ID)
	NewStream(context.Context, peer.ID, ...protocol.ID) (network.Stream, error)
}

// Defaults.
const (
	// DefaultTimeout bounds one whole session, reads and writes included.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxHistory is how many versions, the current one included,
	// the service keeps to hand a member that is behind.
	DefaultMaxHistory = 32
	// maxDocsPerSession bounds the documents one session may carry (their
	// versions must also go up: session.go).
	maxDocsPerSession = 256
	// eventLimit caps the events waiting for a caller that does not read.
	eventLimit = 1024
	// maxEventRejections bounds the rejections a Rejected event keeps. A
	// document holds up to 1024 bad signatures, each with its error: kept
	// whole, the eventLimit events waiting for a caller that does not read
	// would hold hundreds of megabytes, all sent by one member.
	maxEventRejections = 16
)

// Config configures a [Service].
type Config struct {
	// Host is the node's libp2p host (p2p.Node.Host()). Required.
	Host Host
	// Allowlist is the list the node's gater enforces. Each applied
	// version replaces its content. Required; it must not also be fed by
	// a YAML file.
	Allowlist *allowlist.List
	// Current is the version the node trusts now: the genesis document its
	// operator installed, or the newest version persisted at Path. It is
	// not verified against anything. Required. New refuses it if Path
	// holds a newer version, or another one with the same number.
	Current *membership.Document
	// History optionally holds earlier versions, oldest first, each
	// linking to the next and the last linking to Current: the service
	// hands them to members that are further behind.
	History []*membership.Document
	// Path is where the version in force is persisted, with
	// [membership.SaveNewer]: Current at start (unless the file already
	// holds it), then each version before it takes effect. Empty: not
	// persisted. Start the next run from what it holds.
	Path string
	// Hold keeps the exchange handler from closing the connections to a
	// peer while a session with it runs (p2p.Node.Hold): its automatic
	// disconnection after each exchange would cut the session short. Nil:
	// sessions can be cut, and the next connection runs a new one.
	Hold func(peer.ID) (release func())
	// Charge spends a misbehaviour token from a peer (p2p.Node.Charge).
	// Nil: misbehaviour is reported but costs nothing.
	Charge func(peer.ID, ratelimit.Reason)
	// Metrics, if set, receives the service's Prometheus collectors.
	Metrics prometheus.Registerer
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
	// Timeout bounds one session. Default DefaultTimeout.
	Timeout time.Duration
	// MaxHistory is how many versions to keep for members that are
	// behind. Default DefaultMaxHistory.
	MaxHistory int
	// Now returns the time expiry is checked at. Default time.Now.
	Now func() time.Time
	// EventBuffer sizes the Events channel. Default 64.
	EventBuffer int

	// verify checks a received or submitted version against the current
	// one: membership.VerifyNext, or a test's stand-in that controls when
	// it returns.
	verify func(cur, next *membership.Document, now time.Time) (membership.Report, error)
	// inboundDone, if set, is called once a session a peer opened no
	// longer counts as running: a test's peer waits on it before opening
	// the next, which it could otherwise see refused as busy.
	inboundDone func(peer.ID)
}

// ErrConfig is wrapped by the errors of New for an incomplete Config.
var ErrConfig = errors.New("gossip: invalid config")

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Host == nil:
		return c, fmt.Errorf("%w: no Host", ErrConfig)
	case c.Allowlist == nil:
		return c, fmt.Errorf("%w: no Allowlist", ErrConfig)
	case c.Current == nil:
		return c, fmt.Errorf("%w: no Current document", ErrConfig)
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxHistory <= 0 {
		c.MaxHistory = DefaultMaxHistory
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.EventBuffer <= 0 {
		c.EventBuffer = 64
	}
	if c.verify == nil {
		c.verify = membership.VerifyNext
	}
	if c.Charge == nil {
		c.Charge = func(peer.ID, ratelimit.Reason) {}
	}
	return c, nil
}
