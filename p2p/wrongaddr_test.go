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
// but a flood of them from one IP is still cut off: the IP absorbs
// DeclinedShare times the burst of declines, and then it is banned.
func TestDeclinedHandshakeFloodIsCutOff(t *testing.T) {
	const burst = 2
	iw := tu.NewIdentity(t)
	w := tu.Node(t, iw, tu.Allowlist(t, iw), tu.Listen("127.0.0.3"), func(c *p2p.Config) {
		c.Limiter = ratelimit.New(ratelimit.Config{Burst: burst, Refill: time.Hour, BanDuration: time.Hour})
	})
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const ip = "127.0.0.6"
	for i := range burst * ratelimit.DeclinedShare {
		if err := declineHandshake(t, w, ip, k); !errors.As(err, new(sec.ErrPeerIDMismatch)) {
			t.Fatalf("declined handshake %d of %d did not reach the node's key: %v", i+1, burst*ratelimit.DeclinedShare, err)
		}
		if got := ipSpent(w, ratelimit.DeclinedHandshake); got != uint64(i+1) {
			t.Fatalf("after %d declined handshakes the IP was charged %d declines", i+1, got)
		}
	}
	refused := false
	for range 2 * burst * ratelimit.DeclinedShare {
		if err := declineHandshake(t, w, ip, k); !errors.As(err, new(sec.ErrPeerIDMismatch)) {
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("a flood of declined handshakes was never refused")
	}
	ev := tu.NextMatch(t, w.Receiver(), func(ev p2p.ConnectionLimit) bool { return ev.IP.IsValid() })
	if ev.IP != netip.MustParseAddr(ip) || ev.Reason != ratelimit.DeclinedHandshake {
		t.Fatalf("cut off %v for %v, want %s for declined_handshake", ev.IP, ev.Reason, ip)
	}
	if s := w.Limiter().Stats().IPs.Spent; s[ratelimit.FailedHandshake] != 0 {
		t.Fatalf("declined handshakes charged as failed: %v", s)
	}
}
