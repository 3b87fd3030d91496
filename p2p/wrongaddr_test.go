package p2p_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/multiformats/go-multistream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// A hostile member A advertises honest member W's address as its own
// (identify) and has honest member N dial it again and again: here by
// connecting, being identified and hanging up before each of N's sends;
// in the field by sending N requests whose replies N dials back. Each dial
// reaches W, whose key is not A's, and fails. N must not knock at W for A
// more than once, and what W sees (a handshake declined after its key)
// must not be charged as a failed handshake: before, the 21st dial got
// N's IP banned at W (failed_handshake), and N could no longer reach W.
func TestWrongAddressGetsNobodyBanned(t *testing.T) {
	iw, in, ia := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, iw, in, ia)
	// W's charges, as it logs them.
	charged := make(chan struct{}, 1)
	core, logs := observer.New(zap.DebugLevel)
	wLog := zap.New(core, zap.Hooks(func(e zapcore.Entry) error {
		if e.Message == "misbehaviour" {
			select {
			case charged <- struct{}{}:
			default:
			}
		}
		return nil
	}))
	w := tu.Node(t, iw, list, tu.Listen("127.0.0.3"), func(c *p2p.Config) { c.Logger = wLog })
	n := tu.Node(t, in, list, tu.Listen("127.0.0.2")) // dials from 127.0.0.2
	wAddrs := slices.Clone(w.Host().Addrs())
	a := tu.Node(t, ia, list, func(c *p2p.Config) {
		c.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.4/tcp/0")}
		c.HostOptions = append(c.HostOptions, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return wAddrs }))
	})
	identified, err := n.Host().EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		t.Fatal(err)
	}
	defer identified.Close()

	const rounds = 2*ratelimit.DefaultBurst + 1
	for i := range uint64(rounds) {
		a.Sender() <- p2p.Dial{Peer: n.ID(), Addr: n.Addrs()[0]}
		tu.NextMatch(t, n.Receiver(), func(ev p2p.Connected) bool { return ev.Peer == a.ID() })
		waitIdentified(t, identified.Out(), a.Host().ID())
		if got := n.Host().Peerstore().Addrs(a.ID()); i == 0 && !slices.ContainsFunc(got, wAddrs[0].Equal) {
			t.Fatalf("identify did not hand N the address A advertised: %v", got)
		}
		a.Sender() <- p2p.DisconnectFrom{Peer: n.ID()}
		tu.NextMatch(t, n.Receiver(), func(ev p2p.Disconnected) bool { return ev.Peer == a.ID() })
		n.Sender() <- p2p.SendMsg{Peer: a.ID(), ID: i, Data: []byte("reply")}
		if st := tu.NextMatch(t, n.Receiver(), func(st p2p.Status) bool { return st.MsgID == i }); st.OK {
			t.Fatalf("send %d reached A at W's address", i)
		}
	}

	n.Sender() <- p2p.SendMsg{Peer: w.ID(), Addr: w.Addrs()[0], ID: 1000, Data: []byte("still friends")}
	if st := tu.NextMatch(t, n.Receiver(), func(st p2p.Status) bool { return st.MsgID == 1000 }); !st.OK {
		t.Fatalf("N can no longer reach W: %v", st.Err)
	}
	if w.Limiter().IPBanned(netip.MustParseAddr("127.0.0.2")) {
		t.Fatal("W banned N's IP")
	}
	// W charges when it sees N hang up, which may come after N's dial
	// returned: wait for the first charge; the others, if any, came
	// rounds ago.
	select {
	case <-charged:
	case <-time.After(tu.Timeout):
		t.Fatal("W never charged N's IP for the declined handshake")
	}
	byReason := map[string]int{}
	for _, e := range logs.FilterMessage("misbehaviour").All() {
		byReason[e.ContextMap()["reason"].(string)]++
	}
	if len(byReason) != 1 || byReason["declined_handshake"] != 1 {
		t.Fatalf("W charged %v for %d wrong-address dials; want one declined_handshake (N dials the wrong address once)", byReason, rounds)
	}
}

// waitIdentified waits for identify to complete with p.
func waitIdentified(t *testing.T, ch <-chan any, p interface{ String() string }) {
	t.Helper()
	timeout := time.After(tu.Timeout)
	for {
		select {
		case ev := <-ch:
			if e, ok := ev.(event.EvtPeerIdentificationCompleted); ok && e.Peer.String() == p.String() {
				return
			}
		case <-timeout:
			t.Fatalf("identify with %s did not complete", p)
		}
	}
}

// declineHandshake runs what an honest dialer holding a wrong address does
// against n from ip: multistream-select and Noise up to n's key, which is
// not the one it expected, and hangs up. It returns the handshake's error,
// a sec.ErrPeerIDMismatch when n got as far as sending its key, after n
// has closed its side: n charges before it closes.
func declineHandshake(t *testing.T, n *p2p.Node, ip string, key crypto.PrivKey) error {
	t.Helper()
	tr, err := noise.New(noise.ID, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := dialFrom(t, ip, n)
	defer c.Close()
	c.SetDeadline(time.Now().Add(tu.Timeout))
	if err := multistream.SelectProtoOrFail(protocol.ID(noise.ID), c); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	// Noise closes the connection on failure: only our half of it, so
	// that n's close, which follows its charge, can be waited for.
	_, err = tr.SecureOutbound(ctx, halfCloser{c}, tu.NewIdentity(t).ID)
	if _, rerr := io.Copy(io.Discard, c); errors.Is(rerr, os.ErrDeadlineExceeded) {
		t.Fatal("the node did not hang up on a declined handshake")
	}
	return err
}

// halfCloser closes only the writing half of a TCP connection.
type halfCloser struct{ *net.TCPConn }

func (h halfCloser) Close() error { return h.CloseWrite() }

// A handshake declined after the node's key is cheaper than a failed one,
// but only DeclineAllowance times per source IP and window: a stranger can
// fake a decline without any cryptography of its own (message 1 and a
// hang-up), so a flood of them costs a whole token each past the
// allowance, and is cut off as fast as any failed handshake. Before, every
// decline cost a quarter of a token, four times the flood budget.
func TestDeclinedHandshakeFloodIsCutOff(t *testing.T) {
	// The allowance spends DeclineAllowance/DeclinedShare tokens: two more
	// for declines past it.
	const burst = p2p.DeclineAllowance/ratelimit.DeclinedShare + 2
	iw := tu.NewIdentity(t)
	w := tu.Node(t, iw, tu.Allowlist(t, iw), tu.Listen("127.0.0.3"), func(c *p2p.Config) {
		c.Limiter = ratelimit.New(ratelimit.Config{Burst: burst, Refill: time.Hour, BanDuration: time.Hour})
	})
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const ip = "127.0.0.6"
	for i := range p2p.DeclineAllowance {
		if err := declineHandshake(t, w, ip, k); !errors.As(err, new(sec.ErrPeerIDMismatch)) {
			t.Fatalf("declined handshake %d of %d did not reach the node's key: %v", i+1, p2p.DeclineAllowance, err)
		}
		if got := ipSpent(w, ratelimit.DeclinedHandshake); got != uint64(i+1) {
			t.Fatalf("after %d declined handshakes the IP was charged %d declines", i+1, got)
		}
	}
	// The allowance spent DeclineAllowance/DeclinedShare tokens; what is
	// left goes a whole token per decline.
	left := burst - p2p.DeclineAllowance/ratelimit.DeclinedShare
	for i := range left {
		if err := declineHandshake(t, w, ip, k); !errors.As(err, new(sec.ErrPeerIDMismatch)) {
			t.Fatalf("decline %d past the allowance refused within the budget: %v", i+1, err)
		}
		if got := ipSpent(w, ratelimit.FailedHandshake); got != uint64(i+1) {
			t.Fatalf("after %d declines past the allowance the IP was charged %d failed handshakes", i+1, got)
		}
	}
	if err := declineHandshake(t, w, ip, k); errors.As(err, new(sec.ErrPeerIDMismatch)) {
		// The spend that empties the bucket bans: the next one is refused.
		if err := declineHandshake(t, w, ip, k); errors.As(err, new(sec.ErrPeerIDMismatch)) {
			t.Fatal("a flood of declined handshakes past the allowance was not refused")
		}
	}
	ev := tu.NextMatch(t, w.Receiver(), func(ev p2p.ConnectionLimit) bool { return ev.IP.IsValid() })
	if ev.IP != netip.MustParseAddr(ip) || ev.Reason != ratelimit.FailedHandshake {
		t.Fatalf("cut off %v for %v, want %s for failed_handshake", ev.IP, ev.Reason, ip)
	}
	if got := ipSpent(w, ratelimit.DeclinedHandshake); got != p2p.DeclineAllowance {
		t.Fatalf("%d declines charged declined_handshake, want the allowance, %d", got, p2p.DeclineAllowance)
	}
}

// noiseMsg1 is a Noise XX message 1 as the initiator frames it: a two-byte
// length, then an ephemeral key (any 32 bytes are one).
func noiseMsg1(t *testing.T) []byte {
	t.Helper()
	m := make([]byte, 2+32)
	m[1] = 32
	if _, err := rand.Read(m[2:]); err != nil {
		t.Fatal(err)
	}
	return m
}

// fakeDecline picks Noise on a fresh connection to n from ip, writes
// first, reads the node's message 2 unless it is not going to come, runs
// between, then hangs up (FIN) and waits for the node to hang up too,
// which it does after charging.
func fakeDecline(t *testing.T, n *p2p.Node, ip string, first []byte, between func()) {
	t.Helper()
	c := dialFrom(t, ip, n)
	defer c.Close()
	c.SetDeadline(time.Now().Add(tu.Timeout))
	if err := multistream.SelectProtoOrFail(protocol.ID(noise.ID), c); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(first); err != nil {
		t.Fatal(err)
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		t.Fatalf("no message 2: %v", err)
	}
	if _, err := io.ReadFull(c, make([]byte, int(l[0])<<8|int(l[1]))); err != nil {
		t.Fatalf("message 2 cut short: %v", err)
	}
	between()
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the node did not hang up")
	}
}

// What the guard calls a declined handshake is what it sees an honest
// decline do: message 1 alone, then a hang-up soon after the node's key.
// A peer that sent part of message 3 with message 1 (it cannot have read
// the key it answers), or that stalled after the key and hung up later,
// did not decline anything: each costs a failed_handshake. Before, both
// were charged declined_handshake, since no byte came after message 2
// (Noise reads through a buffer, which took message 3's start with
// message 1).
func TestFakeDeclinesAreFailedHandshakes(t *testing.T) {
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	iw := tu.NewIdentity(t)
	w := tu.Node(t, iw, tu.Allowlist(t, iw), tu.Listen("127.0.0.3"), p2p.WithHandshakeClock(now))
	const ip = "127.0.0.7"

	// Message 1 and the first 12 bytes of a message 3 (a length, then
	// the start of an encrypted key) in one write.
	partial := append(noiseMsg1(t), 0, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	fakeDecline(t, w, ip, partial, func() {})
	if d, f := ipSpent(w, ratelimit.DeclinedHandshake), ipSpent(w, ratelimit.FailedHandshake); d != 0 || f != 1 {
		t.Fatalf("part of message 3, then a hang-up: %d declined, %d failed; want 0, 1", d, f)
	}

	// Message 1, then a stall past DeclineWithin, then a hang-up.
	fakeDecline(t, w, ip, noiseMsg1(t), func() { skew.Add(int64(p2p.DeclineWithin + time.Millisecond)) })
	if d, f := ipSpent(w, ratelimit.DeclinedHandshake), ipSpent(w, ratelimit.FailedHandshake); d != 0 || f != 2 {
		t.Fatalf("a stall, then a hang-up: %d declined, %d failed; want 0, 2", d, f)
	}

	// And the control: message 1 alone and a prompt hang-up is a decline
	// (from the allowance: no cryptography shows it honest).
	fakeDecline(t, w, ip, noiseMsg1(t), func() {})
	if d, f := ipSpent(w, ratelimit.DeclinedHandshake), ipSpent(w, ratelimit.FailedHandshake); d != 1 || f != 2 {
		t.Fatalf("message 1, then a prompt hang-up: %d declined, %d failed; want 1, 2", d, f)
	}
}
