package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/multiformats/go-multistream"
)

// A connectivity self-test: how does this node reach a peer, directly and
// through each of its static relays, and how long is a round trip each way.
// The peer answers with go-libp2p's ping protocol, which every node serves
// (to its allowlisted peers only, as everything else).

// PathCheck is one way to a peer.
type PathCheck struct {
	// Relay is the relay of a relayed way; empty for the direct one.
	Relay peer.ID
	// Addr is the address tried, or of the connection used.
	Addr ma.Multiaddr
	// Tried is false when the way was not tried: no direct address known,
	// or this node's own allowlist refuses a relayed way (Err says why).
	Tried bool
	// Err says why the way does not work; nil when it does.
	Err error
	// RTT is the round trip of one ping over it.
	RTT time.Duration
}

// CheckResult is what Check found.
type CheckResult struct {
	Direct PathCheck
	Relays []PathCheck
}

// ErrNoDirectAddr is the error of a direct way that could not be tried:
// the node knows no direct address of the peer.
var ErrNoDirectAddr = errors.New("no direct address of the peer known")

// ErrCheckSelf is the error of a Check of the node's own peer ID: there is
// no way to test from a node to itself.
var ErrCheckSelf = errors.New("p2p: the peer is this node")

// Check tests the ways to p: its direct connection (dialing a known direct
// address if there is none) and a circuit through each static relay, each
// with a ping. Open connections are used as they are; a direct one it dials
// stays open (it is better than a relayed one), a circuit it opens only for
// the test is closed again. It returns ErrCheckSelf for the node's own
// ID and ErrNotAllowlisted for a peer not on the allowlist.
func (n *Node) Check(ctx context.Context, p peer.ID) (CheckResult, error) {
	if p == n.ID() {
		// Shared allowlists list the node itself: a dial to self fails
		// with libp2p's own words, and "not on the allowlist" is untrue
		// of an ID the node holds the key of.
		return CheckResult{}, ErrCheckSelf
	}
	if !n.cfg.Allowlist.Contains(p) {
		return CheckResult{}, ErrNotAllowlisted
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
	defer cancel()
	res := CheckResult{Direct: n.checkDirect(ctx, p)}
	for _, r := range n.relay.relays {
		res.Relays = append(res.Relays, n.checkRelay(ctx, p, r))
	}
	return res, nil
}

func (n *Node) checkDirect(ctx context.Context, p peer.ID) PathCheck {
	if c := n.conn(p, func(c network.Conn) bool { return !isRelayed(c.RemoteMultiaddr()) }); c != nil {
		return n.pingConn(ctx, PathCheck{Addr: c.RemoteMultiaddr(), Tried: true}, c)
	}
	var direct []ma.Multiaddr
	for _, a := range n.host.Peerstore().Addrs(p) {
		if !isRelayed(a) {
			direct = append(direct, a)
		}
	}
	if len(direct) == 0 {
		return PathCheck{Err: ErrNoDirectAddr}
	}
	pc := PathCheck{Addr: direct[0], Tried: true}
	if _, err := n.dialPeer(network.WithForceDirectDial(ctx, "check"), p); err != nil {
		pc.Err = n.ownRefusal(err, p, "")
		return pc
	}
	c := n.conn(p, func(c network.Conn) bool { return !isRelayed(c.RemoteMultiaddr()) })
	if c == nil {
		pc.Err = errors.New("connected, but the connection closed at once: the peer may not allowlist this node")
		return pc
	}
	pc.Addr = c.RemoteMultiaddr()
	return n.pingConn(ctx, pc, c)
}

func (n *Node) checkRelay(ctx context.Context, p peer.ID, r peer.AddrInfo) PathCheck {
	pc := PathCheck{Relay: r.ID, Tried: true}
	if c := n.conn(p, func(c network.Conn) bool { id, ok := relayOf(c.RemoteMultiaddr()); return ok && id == r.ID }); c != nil {
		pc.Addr = c.RemoteMultiaddr()
		return n.pingConn(ctx, pc, c)
	}
	if len(r.Addrs) == 0 {
		pc.Err = errors.New("no address of the relay")
		return pc
	}
	pc.Addr = r.Addrs[0].Encapsulate(ma.StringCast("/p2p/" + r.ID.String() + "/p2p-circuit"))
	if err := n.relayRefusal(p, r.ID); err != nil {
		// The dial below bypasses the swarm, whose gater would refuse it
		// before dialing: it would fail after the handshake with
		// go-libp2p's "gater rejected connection ... direction 2".
		pc.Tried, pc.Err = false, err
		return pc
	}
	if err := n.checkDenied(p, r.ID, nil); err != nil {
		// The relay would charge this node for asking again.
		pc.Tried, pc.Err = false, err
		return pc
	}
	sw, ok := n.host.Network().(*swarm.Swarm)
	if !ok {
		pc.Err = errors.New("relayed dial not supported by this host")
		return pc
	}
	tpt := sw.TransportForDialing(pc.Addr)
	if tpt == nil {
		pc.Err = errors.New("the node has no relay transport")
		return pc
	}
	// A circuit of its own, outside the swarm: the test must go through
	// this relay even when the peer is connected another way.
	cc, err := tpt.Dial(network.WithAllowLimitedConn(ctx, "check"), pc.Addr, p)
	if err != nil {
		pc.Err = n.ownRefusal(n.checkDenied(p, r.ID, err), p, r.ID)
		return pc
	}
	defer cc.Close()
	s, err := cc.OpenStream(ctx)
	if err != nil {
		// The peer's gater may close the circuit before our first
		// stream is open rather than while it is used (a loaded
		// machine): the same answer, told the same way.
		pc.Err = pingFailed(err)
		return pc
	}
	defer s.Reset()
	pc.RTT, pc.Err = pingStream(ctx, s)
	return pc
}

// conn is an open connection to p that match accepts, or nil.
func (n *Node) conn(p peer.ID, match func(network.Conn) bool) network.Conn {
	for _, c := range n.host.Network().ConnsToPeer(p) {
		if !c.IsClosed() && match(c) {
			return c
		}
	}
	return nil
}

// pingConn fills in pc with a ping over c.
func (n *Node) pingConn(ctx context.Context, pc PathCheck, c network.Conn) PathCheck {
	s, err := c.NewStream(network.WithAllowLimitedConn(ctx, "check"))
	if err != nil {
		pc.Err = pingFailed(err) // as for OpenStream, checkRelay
		return pc
	}
	defer s.Reset()
	pc.RTT, pc.Err = pingStream(ctx, s)
	return pc
}

// stream is what pingStream needs of a stream: network.Stream and a
// transport's muxed stream both are one.
type stream interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
}

// pingStream negotiates the ping protocol on s and times one ping.
func pingStream(ctx context.Context, s stream) (time.Duration, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := multistream.SelectProtoOrFail(ping.ID, s); err != nil {
		return 0, pingFailed(err)
	}
	buf := make([]byte, ping.PingSize)
	if _, err := rand.Read(buf); err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := s.Write(buf); err != nil {
		return 0, pingFailed(err)
	}
	got := make([]byte, ping.PingSize)
	if _, err := io.ReadFull(s, got); err != nil {
		return 0, pingFailed(err)
	}
	rtt := time.Since(start)
	if string(got) != string(buf) {
		return 0, errors.New("ping: the peer answered with other bytes")
	}
	return rtt, nil
}

// pingFailed says what a failed ping shows of the peer. Only a timeout is
// silence. A reset or an end from the far side is an answer: the peer
// refused the connection (its gater closes it once Noise has proved our
// key, so it shows as a reset of our first stream) or closed it; on a
// relayed way the relay may have dropped the circuit instead.
func pingFailed(err error) error {
	var se *network.StreamError
	var ne net.Error
	var unsupported multistream.ErrNotSupported[protocol.ID]
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("ping: the peer does not answer: no reply before the check's deadline (%w)", err)
	case errors.As(err, &unsupported):
		return fmt.Errorf("ping: the peer does not serve ping (%w)", err)
	case errors.As(err, &se) && se.Remote, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("ping: the far end closed the connection, which is an answer, not silence: "+
			"the peer refused this node (its refused events say why) or closed the connection, "+
			"or the relay of a relayed way dropped the circuit (%w)", err)
	case errors.As(err, &se):
		return fmt.Errorf("ping: the stream was reset on this node's side (%w)", err)
	}
	return fmt.Errorf("ping: %w", err)
}

// relayRefusal is why this node's own gater refuses a connection to p
// through relay r (gater.securedRelayed, outbound), in plain words; nil if
// it admits it.
func (n *Node) relayRefusal(p, r peer.ID) error {
	e, listed := n.cfg.Allowlist.Get(p)
	switch {
	case !listed:
		return errors.New("this node's allowlist refuses it: the peer is not on it")
	case !e.AllowsRelayed():
		return errors.New("this node's allowlist refuses it: the peer's entry is bound to IP addresses " +
			"(addrs) without relay: true, and through a relay the connection shows the relay's IP")
	case !n.cfg.Allowlist.Contains(r):
		return errors.New("this node's allowlist refuses it: the relay is not on it")
	case n.limiter.PeerBanned(string(p)):
		return errors.New("this node refuses it: the peer is cut off by its rate limiter for now")
	case n.limiter.PeerBanned(string(r)):
		return errors.New("this node refuses it: the relay is cut off by its rate limiter for now")
	}
	return nil
}

// ownRefusal puts a refusal by this node's own gater, which go-libp2p
// reports in its internal words ("gater rejected connection with peer ...
// with direction 2", "gater disallows connection to peer"), in plain
// ones. relay is the relay of a relayed way, empty for the direct one.
// Other errors are returned as they are.
func (n *Node) ownRefusal(err error, p, relay peer.ID) error {
	// The upgrader's refusal has no sentinel error, only this text.
	if !errors.Is(err, swarm.ErrGaterDisallowedConnection) && !strings.Contains(err.Error(), "gater rejected connection") {
		return err
	}
	if relay != "" {
		if why := n.relayRefusal(p, relay); why != nil {
			return why
		}
	} else if n.limiter.PeerBanned(string(p)) {
		return errors.New("this node refuses it: the peer is cut off by its rate limiter for now")
	} else if e, listed := n.cfg.Allowlist.Get(p); listed && len(e.Addrs) > 0 {
		return errors.New("this node refuses it: the peer's allowlist entry binds it to IP addresses (addrs), " +
			"and the one dialed is not among them or is cut off by the rate limiter")
	}
	return errors.New("this node's own allowlist or rate limiter refuses the connection")
}
