package p2p_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	manet "github.com/multiformats/go-multiaddr/net"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// handshakeBudget is the victims' token budget in these tests: small, and
// with a refill so slow that no token comes back while a test runs.
var handshakeBudget = ratelimit.Config{Burst: 3, Refill: time.Hour, BanDuration: time.Hour}

// The multistream-select messages a libp2p dialer sends to pick Noise:
// varint length, then the line.
var (
	msHeader = append([]byte{19}, "/multistream/1.0.0\n"...)
	msNoise  = append([]byte{7}, "/noise\n"...)
)

// Ways to fail an inbound handshake, each one TCP connection's worth of
// bytes, all of which must cost the source IP a token.
var failedHandshakes = map[string][]byte{
	// Not multistream at all: the varint never ends.
	"garbage": bytes.Repeat([]byte{0xff}, 64),
	// A plain-text protocol knocking on the wrong door.
	"http": []byte("GET / HTTP/1.1\r\nHost: victim\r\n" + string(bytes.Repeat([]byte{'x'}, 200)) + "\r\n\r\n"),
	// Multistream that does not pick /noise.
	"wrong version": append([]byte{9}, "/tls/1.0\n"...),
	// /noise negotiated, then a first Noise message too short to hold
	// an ephemeral key: the Noise responder itself fails.
	"bad noise": append(append(append([]byte{}, msHeader...), msNoise...), 0, 5, 1, 2, 3, 4, 5),
}

// tcpAddr is the node's listening TCP address.
func tcpAddr(t *testing.T, n *p2p.Node) *net.TCPAddr {
	t.Helper()
	a, err := manet.ToNetAddr(n.Host().Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	return a.(*net.TCPAddr)
}

// dialFrom opens a raw TCP connection to n from the loopback address src.
func dialFrom(t *testing.T, src string, n *p2p.Node) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: tu.Timeout}
	c, err := d.Dial("tcp", tcpAddr(t, n).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// failHandshake sends b on a fresh connection from src and waits for the
// node to hang up, which it does only after charging the IP.
func failHandshake(t *testing.T, src string, n *p2p.Node, b []byte) {
	t.Helper()
	c := dialFrom(t, src, n)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(tu.Timeout))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: the node did not hang up on a failed handshake", src)
	}
	c.Close()
}

// refusedAtAccept reports whether a fresh connection from src is closed
// before the node says anything. A node that accepts a connection speaks
// first (the multistream header), so silence and a close mean the gater
// refused the IP.
func refusedAtAccept(t *testing.T, src string, n *p2p.Node) bool {
	t.Helper()
	c := dialFrom(t, src, n)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(tu.Timeout))
	buf := make([]byte, len(msHeader))
	_, err := io.ReadFull(c, buf)
	switch {
	case err == nil:
		if !bytes.Equal(buf, msHeader) {
			t.Fatalf("unexpected greeting %q", buf)
		}
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("%s: neither greeted nor refused", src)
	}
	return true
}

func ipSpent(n *p2p.Node, r ratelimit.Reason) uint64 {
	return n.Limiter().Stats().IPs.Spent[r]
}

// TestFailedHandshakeChargesIP shows that every way an inbound handshake
// can fail costs the source IP one token, that the IP is cut off when its
// budget runs out (ConnectionLimit, then refused at accept), and that other
// IPs are untouched.
func TestFailedHandshakeChargesIP(t *testing.T) {
	for name, b := range failedHandshakes {
		t.Run(name, func(t *testing.T) {
			victim, honest := tu.NewIdentity(t), tu.NewIdentity(t)
			list := tu.Allowlist(t, victim, honest)
			v := tu.Node(t, victim, list, func(c *p2p.Config) { c.RateLimit = handshakeBudget })
			attacker := netip.MustParseAddr("127.0.0.2")

			for i := 1; i <= handshakeBudget.Burst; i++ {
				failHandshake(t, attacker.String(), v, b)
				if got := ipSpent(v, ratelimit.FailedHandshake); got != uint64(i) {
					t.Fatalf("after %d failed handshakes the IP was charged %d times", i, got)
				}
				if v.Limiter().IPBanned(attacker) {
					t.Fatalf("IP banned after %d failures, within its budget of %d", i, handshakeBudget.Burst)
				}
			}
			failHandshake(t, attacker.String(), v, b)
			ev := tu.NextMatch(t, v.Receiver(), func(e p2p.ConnectionLimit) bool { return e.IP == attacker })
			if ev.Reason != ratelimit.FailedHandshake || ev.Peer != "" || !ev.Until.After(time.Now()) {
				t.Fatalf("event %+v", ev)
			}
			if !refusedAtAccept(t, attacker.String(), v) {
				t.Fatal("a new connection from the banned IP was accepted")
			}
			// Knocking while banned is refused before the handshake, so it
			// costs nothing more.
			if got := ipSpent(v, ratelimit.FailedHandshake); got != uint64(handshakeBudget.Burst+1) {
				t.Fatalf("charged %d times", got)
			}

			// Another IP is not affected: it is greeted, and an honest
			// node there exchanges messages.
			if refusedAtAccept(t, "127.0.0.3", v) {
				t.Fatal("127.0.0.3 refused")
			}
			h := tu.Node(t, honest, list, tu.Listen("127.0.0.3"))
			h.Sender() <- p2p.SendMsg{Peer: victim.ID, Addr: v.Addrs()[0], ID: 1, Data: []byte("hi")}
			if st := tu.Next[p2p.Status](t, h.Receiver()); !st.OK {
				t.Fatalf("honest peer on another IP: %+v", st)
			}
			if d := tu.Next[p2p.Data](t, v.Receiver()); d.From != honest.ID {
				t.Fatalf("data %+v", d)
			}
		})
	}
}

// TestKnockIsNotCharged shows the one exception: a connection closed by the
// peer before it sent a byte (a port scan, a health check) costs nothing,
// however often it happens.
func TestKnockIsNotCharged(t *testing.T) {
	victim := tu.NewIdentity(t)
	v := tu.Node(t, victim, tu.Allowlist(t, victim), func(c *p2p.Config) { c.RateLimit = handshakeBudget })
	for range 3 * handshakeBudget.Burst {
		c := dialFrom(t, "127.0.0.2", v)
		c.Close()
	}
	// Proving an absence: a charge for each knock would have exhausted
	// the budget twice over by now.
	tu.None[p2p.ConnectionLimit](t, v.Receiver(), 500*time.Millisecond)
	if got := ipSpent(v, ratelimit.FailedHandshake); got != 0 {
		t.Fatalf("knocks charged %d times", got)
	}
	if refusedAtAccept(t, "127.0.0.2", v) {
		t.Fatal("knocking got the IP refused")
	}
}

// TestAbandonedHandshakeIsCharged shows that, unlike a knock, a peer that
// starts a handshake and gives up is charged: it sent bytes. (One that
// stalls until libp2p's 15 s accept timeout is charged the same way when the
// node closes it; the test does not wait that long.)
func TestAbandonedHandshakeIsCharged(t *testing.T) {
	victim := tu.NewIdentity(t)
	v := tu.Node(t, victim, tu.Allowlist(t, victim), func(c *p2p.Config) { c.RateLimit = handshakeBudget })
	c := dialFrom(t, "127.0.0.2", v)
	// Half a handshake: the multistream header, then nothing.
	if _, err := c.Write(msHeader); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msHeader))
	c.SetReadDeadline(time.Now().Add(tu.Timeout))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Proving the charge needs an event: three more failures must cut
	// the IP off, which they would not if the abandoned one were free.
	for range handshakeBudget.Burst {
		failHandshake(t, "127.0.0.2", v, failedHandshakes["garbage"])
	}
	ev := tu.NextMatch(t, v.Receiver(), func(e p2p.ConnectionLimit) bool { return e.IP.IsValid() })
	if ev.Reason != ratelimit.FailedHandshake {
		t.Fatalf("event %+v", ev)
	}
}

// TestStalledHandshakeCutAtHandshakeTimeout shows that Config.HandshakeTimeout,
// not go-libp2p's fixed 15 s, bounds an inbound handshake: a peer that stalls
// half-way has its connection closed once it has passed, and its IP charged.
// (A node whose dials get longer than 15 s, as a loaded machine's may need,
// must give its peers' handshakes as long: go-libp2p cut them at 15 s while
// the dialer still waited, and TestAllToAll failed attempts so.)
func TestStalledHandshakeCutAtHandshakeTimeout(t *testing.T) {
	// Far under go-libp2p's 15 s, and the wait for the close far over
	// this: only the configured bound can close the connection in time.
	const timeout = time.Second
	const wait = 10 * time.Second
	victim := tu.NewIdentity(t)
	v := tu.Node(t, victim, tu.Allowlist(t, victim), func(c *p2p.Config) {
		c.RateLimit, c.HandshakeTimeout = handshakeBudget, timeout
	})
	c := dialFrom(t, "127.0.0.2", v)
	if _, err := c.Write(msHeader); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msHeader))
	c.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	// Then nothing: the node must hang up.
	if _, err := c.Read(buf); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled handshake still open %s after its %s timeout (read: %v)", wait, timeout, err)
	}
	// The charge is made before the close.
	if got := ipSpent(v, ratelimit.FailedHandshake); got != 1 {
		t.Fatalf("stalled handshake charged %d times, want 1", got)
	}
}
