package p2p

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/core/transport"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-libp2p/p2p/transport/tcpreuse"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// Failed inbound handshakes.
//
// Until Noise has proved a key, the source IP is all a node knows about a
// connection, so a handshake that fails is charged to that IP
// (ratelimit.FailedHandshake). "Handshake" here means everything between
// accept and a proved key: the multistream-select negotiation of /noise and
// the Noise XX exchange itself. go-libp2p runs the first inside its
// upgrader, before the security transport is ever called, so wrapping Noise
// alone would miss the cheapest attack there is (bytes that are not
// multistream at all). Two small wrappers therefore work together:
//
//   - guardedTCP gives the TCP transport an upgrader whose listeners hand
//     out guardConns: every accepted connection is watched from accept until
//     it closes;
//   - guardedNoise wraps the Noise transport and marks a guardConn secured
//     when its handshake succeeds.
//
// A guardConn that is closed without having been secured failed its
// handshake and is charged, once. Connections refused earlier (by the
// gater's InterceptAccept or the resource manager) never become guardConns,
// so a banned IP is not charged again for knocking. A connection that fails
// after Noise (a stranger's key, a key from the wrong IP) is the gater's to
// charge, under the reason that says why.
//
// One case is charged less, a few times per source IP: a handshake that
// looks declined once our key was seen. What an honest dialer does when it
// holds this address for another peer is send Noise message 1 alone, read
// our message 2 (which carries our key), find the key is not the one it
// dialed, and hang up at once without a byte of message 3; a member can
// make honest nodes do that by advertising this node's address as its own
// (wrongaddr.go). The guard checks what it can see of that: the peer's
// bytes before our message 2 were exactly one Noise message (its length
// prefix says how long), we wrote message 2 whole, and the peer then hung
// up (FIN or RST) within declineWithin, without another byte. It cannot
// see whether the peer read message 2: a stranger sending 34 random bytes
// and hanging up looks the same, at no cryptography of its own. So only
// declineAllowance such declines per source IP and wrongAddrTTL cost a
// ratelimit.DeclinedHandshake (a fraction of a token): the dialer's
// wrong-address memory makes an honest node decline at most once per
// (peer, address) and wrongAddrTTL, so it stays within that; beyond
// it a decline is a ratelimit.FailedHandshake like any other failure. The
// flood budget per IP is therefore what it is without declines, plus a
// few tokens' worth per wrongAddrTTL.
//
// One case is deliberately not charged: a peer that connects and hangs up
// (FIN or RST) before sending a single byte. That is what port scanners,
// load-balancer health checks and `nc -z` do; it costs the node an accept
// and no cryptography, so banning an operator's monitoring for it would buy
// nothing. A peer that connects and sends nothing, holding the connection
// until the upgrader's accept timeout closes it, is charged: it held a
// handshake slot for the whole timeout.

// chargeFunc spends a misbehaviour token; it is gater.charge.
type chargeFunc func(p peer.ID, ip netip.Addr, r ratelimit.Reason)

const (
	// declineAllowance is how many declined handshakes per source IP and
	// wrongAddrTTL are charged ratelimit.DeclinedHandshake (a bucket that
	// size, refilled over wrongAddrTTL); the rest are charged
	// ratelimit.FailedHandshake. An honest dialer declines once per
	// (peer, address) it holds wrongly and wrongAddrTTL, and a hostile
	// member can hand it a wrong address for every peer of the allowlist
	// (lookups' answers are not signed): so it is sized for a committee,
	// 64 unbound peers, while 64 quarter tokens (16) stay under the
	// default burst of 20, so the fooled are not cut off. A flood gains
	// at most 48 handshakes per wrongAddrTTL from it.
	declineAllowance = 64

	// declineWithin is how soon after our message 2 the peer must hang up
	// for the handshake to count as declined. An honest dialer hangs up a
	// signature check after message 2 reaches it, so within a round trip;
	// one that holds the connection open longer is stalling.
	declineWithin = 5 * time.Second

	// maxDeclineIPs bounds the memory of the allowance: the source IPs
	// whose declines it counts. As many as the misbehaviour budget
	// tracks: forgetting an IP hands it a new allowance, so a smaller
	// table would give an attacker cycling through more IPs (IPv6 /64s)
	// every decline cheap again.
	maxDeclineIPs = ratelimit.DefaultMaxKeys
)

// wrongAddrFunc is told that a dial to expected at a found actual's key
// there (Node.wrongAddr); nil ignores it.
type wrongAddrFunc func(expected, actual peer.ID, a ma.Multiaddr)

// guardedTCP returns a TCP transport constructor for libp2p.Transport: the
// stock one, given an upgrader that watches inbound handshakes. Its
// signature mirrors tcp.NewTCPTransport's, which is what fx injects.
// declines grants the cheaper charge of a declined handshake; now is the
// guard's clock (time.Now but in tests).
func guardedTCP(charge chargeFunc, declines *allowance, now func() time.Time) func(transport.Upgrader, network.ResourceManager, *tcpreuse.ConnMgr, ...tcp.Option) (*tcp.TcpTransport, error) {
	return func(up transport.Upgrader, rm network.ResourceManager, shared *tcpreuse.ConnMgr, opts ...tcp.Option) (*tcp.TcpTransport, error) {
		return tcp.NewTCPTransport(&guardUpgrader{Upgrader: up, charge: charge, declines: declines, now: now}, rm, shared, opts...)
	}
}

// guardedNoise returns a security constructor for libp2p.Security: Noise,
// wrapped to report how inbound handshakes end and which outbound ones met
// another key than the one dialed. Its signature mirrors noise.New's,
// which is what fx injects.
func guardedNoise(charge chargeFunc, wrong wrongAddrFunc) func(protocol.ID, crypto.PrivKey, []tptu.StreamMuxer) (*guardedSecurity, error) {
	return func(id protocol.ID, k crypto.PrivKey, muxers []tptu.StreamMuxer) (*guardedSecurity, error) {
		t, err := noise.New(id, k, muxers)
		if err != nil {
			return nil, err
		}
		return &guardedSecurity{SecureTransport: t, charge: charge, wrongAddr: wrong}, nil
	}
}

// guardUpgrader is go-libp2p's upgrader with watched listeners. Dials pass
// through untouched: a handshake this node started and that failed is not
// the remote's misbehaviour to charge.
type guardUpgrader struct {
	transport.Upgrader
	charge   chargeFunc
	declines *allowance
	now      func() time.Time
}

func (u *guardUpgrader) UpgradeGatedMaListener(t transport.Transport, l transport.GatedMaListener) transport.Listener {
	return u.Upgrader.UpgradeGatedMaListener(t, &guardListener{GatedMaListener: l, charge: u.charge, declines: u.declines, now: u.now})
}

// UpgradeListener is deprecated upstream but still part of the interface;
// it must not bypass the guard.
func (u *guardUpgrader) UpgradeListener(t transport.Transport, l manet.Listener) transport.Listener {
	return u.UpgradeGatedMaListener(t, u.GateMaListener(l))
}

// guardListener wraps every connection its listener accepts (after the gater
// and the resource manager let it through) in a guardConn.
type guardListener struct {
	transport.GatedMaListener
	charge   chargeFunc
	declines *allowance       // the cheaper charge of a declined handshake, a few per IP
	now      func() time.Time // when a decline came
	// closed is set when the host closes the listener: handshakes it cuts
	// short then are the node's doing, not the peer's.
	closed atomic.Bool
}

func (l *guardListener) Accept() (manet.Conn, network.ConnManagementScope, error) {
	c, scope, err := l.GatedMaListener.Accept()
	if err != nil {
		return c, scope, err
	}
	ip, _ := ipOf(c.RemoteMultiaddr())
	return &guardConn{Conn: c, ip: ip, l: l}, scope, nil
}

func (l *guardListener) Close() error {
	l.closed.Store(true)
	return l.GatedMaListener.Close()
}

// guardConn watches one inbound connection until its handshake is decided.
type guardConn struct {
	manet.Conn
	ip netip.Addr
	l  *guardListener

	secured atomic.Bool // Noise proved a key: the gater takes over
	spoke   atomic.Bool // the peer sent at least one byte
	hungUp  atomic.Bool // the peer closed before sending anything

	// A declined handshake: the initiator sent message 1 alone and hung
	// up soon after we sent our key. In Noise XX the responder writes
	// exactly one message, the second, which carries its key; the
	// initiator's answer (the third) is the next thing to read.
	noise    atomic.Bool  // the Noise responder runs: the multistream part is over
	oneMsg   atomic.Bool  // the Noise bytes read so far are exactly one message
	wrote    atomic.Bool  // we wrote in the Noise part: message 2, or tried to
	sentKey  atomic.Bool  // we wrote message 2 whole, in answer to exactly one message
	keyAt    atomic.Int64 // when, in the listener's clock's UnixNano
	answered atomic.Bool  // the peer sent bytes after message 2
	declined atomic.Bool  // the peer hung up within declineWithin of message 2, without a byte more

	// The Noise bytes read before message 2 and the first two of them,
	// message 1's length prefix. Only Read touches them, and Noise reads
	// from one goroutine.
	pre int
	hdr [2]byte

	settle sync.Once
}

func (c *guardConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.secured.Load() {
		return n, err
	}
	sentKey := c.sentKey.Load()
	switch {
	case n > 0:
		c.spoke.Store(true)
		switch {
		case sentKey:
			c.answered.Store(true)
		case c.noise.Load() && !c.wrote.Load():
			c.readBeforeKey(b[:n])
		}
	case err != nil && peerHungUp(err):
		if !c.spoke.Load() {
			c.hungUp.Store(true)
		}
		if sentKey && !c.answered.Load() && c.l.now().UnixNano()-c.keyAt.Load() <= int64(declineWithin) {
			c.declined.Store(true)
		}
	}
	return n, err
}

// readBeforeKey counts p, Noise bytes the peer sent before our message 2,
// and notes whether all of them so far make exactly one message. Noise
// reads through a buffer, so a Read may return more than message 1: bytes
// an honest initiator cannot have sent yet, since its next message
// answers ours.
func (c *guardConn) readBeforeKey(p []byte) {
	for i := 0; c.pre+i < len(c.hdr) && i < len(p); i++ {
		c.hdr[c.pre+i] = p[i]
	}
	c.pre += len(p)
	c.oneMsg.Store(c.pre >= len(c.hdr) && c.pre == len(c.hdr)+int(binary.BigEndian.Uint16(c.hdr[:])))
}

func (c *guardConn) Write(b []byte) (int, error) {
	// The clock is read before the write: the peer may have message 2,
	// and act on it, before Write returns here, so a time taken after
	// could postdate the peer's hang-up and make a stall look prompt.
	at := c.l.now().UnixNano()
	n, err := c.Conn.Write(b)
	// The responder's first write is message 2, in one Write.
	if c.noise.Load() && !c.secured.Load() && c.wrote.CompareAndSwap(false, true) &&
		err == nil && n == len(b) && c.oneMsg.Load() {
		c.keyAt.Store(at)
		c.sentKey.Store(true)
	}
	return n, err
}

// Close charges a handshake that never completed, then closes. Charging
// first means that whoever sees the connection close can rely on the charge
// having been made.
func (c *guardConn) Close() error {
	c.failed()
	return c.Conn.Close()
}

// failed charges the source IP once, unless the handshake succeeded, the
// peer merely knocked, or the node itself is shutting the listener down. A
// handshake that looks declined once the peer had our key is what an
// honest dialer holding a wrong address does (wrongaddr.go): while the
// source IP has declines left in its allowance it costs the smaller
// DeclinedHandshake, so that a node whose address a member advertises as
// its own does not ban the members fooled into dialing it. Past the
// allowance it is a FailedHandshake: a stranger can fake a decline without
// any cryptography of its own, and each one costs this node a signature
// and a Diffie-Hellman.
func (c *guardConn) failed() {
	c.settle.Do(func() {
		if c.secured.Load() || c.l.closed.Load() || (c.hungUp.Load() && !c.spoke.Load()) || !c.ip.IsValid() {
			return
		}
		r := ratelimit.FailedHandshake
		if c.declined.Load() && c.l.declines.ip(c.ip) {
			r = ratelimit.DeclinedHandshake
		}
		c.l.charge("", c.ip, r)
	})
}

// peerHungUp reports whether a read error means the remote closed or reset
// the connection, as opposed to the node closing it or a deadline.
func peerHungUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// guardedSecurity is Noise, reporting how each inbound handshake ended and
// which outbound ones found another key than the one dialed.
type guardedSecurity struct {
	sec.SecureTransport
	charge    chargeFunc
	wrongAddr wrongAddrFunc
}

// SecureOutbound runs the Noise initiator. A handshake that proves another
// key than p's was dialed at an address that is not p's: the node is told
// (wrongaddr.go), so that it does not knock there for p again soon.
func (s *guardedSecurity) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	sc, err := s.SecureTransport.SecureOutbound(ctx, insecure, p)
	var mismatch sec.ErrPeerIDMismatch
	if err != nil && s.wrongAddr != nil && errors.As(err, &mismatch) {
		if a, ok := remoteMultiaddr(insecure); ok && !isRelayed(a) {
			// Through a relay, the relay chose whom to splice in: the
			// circuit address is not the far end's to be wrong about.
			s.wrongAddr(p, mismatch.Actual, a)
		}
	}
	return sc, err
}

// remoteMultiaddr is the remote address of a raw connection.
func remoteMultiaddr(c net.Conn) (ma.Multiaddr, bool) {
	if mc, ok := c.(interface{ RemoteMultiaddr() ma.Multiaddr }); ok {
		a := mc.RemoteMultiaddr()
		return a, a != nil
	}
	a, err := manet.FromNetAddr(c.RemoteAddr())
	return a, err == nil
}

// SecureInbound runs the Noise responder. On success it marks the
// connection secured, so that closing it later (the gater refusing the key,
// or the peer leaving) is not taken for a failed handshake. A failure is
// charged when the connection closes; a connection that did not come from a
// guarded listener (a custom transport via Config.HostOptions) is charged
// here instead.
func (s *guardedSecurity) SecureInbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	gc, guarded := insecure.(*guardConn)
	if guarded {
		gc.noise.Store(true)
	}
	sc, err := s.SecureTransport.SecureInbound(ctx, insecure, p)
	switch {
	case err == nil && guarded:
		gc.secured.Store(true)
	case err == nil:
	case guarded:
		gc.failed()
		return nil, err
	default:
		if ip, ok := netAddrIP(insecure.RemoteAddr()); ok {
			s.charge("", ip, ratelimit.FailedHandshake)
		}
		return nil, err
	}
	return sc, nil
}

// netAddrIP is the IP of a TCP (or other IP-based) net.Addr.
func netAddrIP(a net.Addr) (netip.Addr, bool) {
	if a == nil {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}
