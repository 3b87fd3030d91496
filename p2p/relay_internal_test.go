package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/multiformats/go-multistream"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

func newTestID(t *testing.T) peer.ID {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestMemberACL(t *testing.T) {
	a, b, stranger := newTestID(t), newTestID(t), newTestID(t)
	list, err := allowlist.New(allowlist.Entry{ID: a}, allowlist.Entry{ID: b})
	if err != nil {
		t.Fatal(err)
	}
	var charged []peer.ID
	acl := &memberACL{
		cfg:    Config{Allowlist: list, Limiter: ratelimit.New(ratelimit.Config{})},
		charge: func(p peer.ID, r ratelimit.Reason) { charged = append(charged, p) },
	}
	if !acl.AllowReserve(a, nil) || !acl.AllowConnect(a, nil, b) {
		t.Fatal("members refused")
	}
	if len(charged) != 0 {
		t.Fatalf("members charged: %v", charged)
	}
	if acl.AllowReserve(stranger, nil) {
		t.Fatal("a stranger may reserve")
	}
	// A member may not use the relay to reach someone who is not one, and
	// a stranger may not reach a member. Only the stranger asking pays:
	// the member asking for a stranger may hold an allowlist the relay's
	// does not match yet.
	if acl.AllowConnect(a, nil, stranger) || acl.AllowConnect(stranger, nil, b) {
		t.Fatal("a circuit with a stranger at one end was allowed")
	}
	if want := []peer.ID{stranger, stranger}; len(charged) != 2 || charged[0] != want[0] || charged[1] != want[1] {
		t.Fatalf("charged %v, want %v", charged, want)
	}
}

// A member cut off at the relay cannot get an honest member charged (and
// cut off in turn) by having it dial through the relay: the honest member
// asks the relay once, is refused for free, and does not ask again for
// relayRefusedTTL however often it is made to dial (the relay would charge
// it for asking again); over several windows it is never charged. A source
// cut off itself still pays.
func TestMemberACLDoesNotChargeForTheDestination(t *testing.T) {
	honest, hostile, r := newTestID(t), newTestID(t), newTestID(t)
	list, err := allowlist.New(allowlist.Entry{ID: honest}, allowlist.Entry{ID: hostile}, allowlist.Entry{ID: r})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	lim := ratelimit.New(ratelimit.Config{Now: clock})
	for !lim.SpendPeer(string(hostile), ratelimit.MalformedMessage).Exhausted {
	}
	charged := map[peer.ID]int{}
	acl := &memberACL{
		cfg:     Config{Allowlist: list, Limiter: lim},
		charge:  func(p peer.ID, r ratelimit.Reason) { charged[p]++; lim.SpendPeer(string(p), r) },
		favours: newRefusalFavours(clock),
	}
	// The honest member's dialing side: its gater and what its dials
	// learn from the relay's answers.
	denied := newAddrMemory(clock, relayRefusedTTL)
	g := &gater{list: list, limiter: ratelimit.New(ratelimit.Config{Now: clock}), denied: denied}
	circuit := ma.StringCast("/ip4/127.0.0.1/tcp/4001/p2p/" + r.String() + "/p2p-circuit")
	const windows = 4
	asked := 0
	for i := range windows * ratelimit.DefaultBurst {
		if i%ratelimit.DefaultBurst == 0 {
			now = now.Add(relayRefusedTTL)
			// The hostile member stays cut off at the relay.
			for !lim.SpendPeer(string(hostile), ratelimit.MalformedMessage).Exhausted {
			}
		}
		if !g.InterceptAddrDial(hostile, circuit) {
			continue
		}
		asked++
		if acl.AllowConnect(honest, nil, hostile) {
			t.Fatalf("circuit %d to a peer cut off was allowed", i)
		}
		err := relayDenied(denied, hostile, refusedDial(hostile, circuit), nil)
		if !errors.Is(err, ErrRelayRefusedDestination) {
			t.Fatalf("the refused dial says %v", err)
		}
	}
	if asked != windows {
		t.Fatalf("the honest member asked the relay %d times in %d windows, want once each", asked, windows)
	}
	if charged[honest] != 0 || lim.PeerBanned(string(honest)) {
		t.Fatalf("the honest source was charged %d times (banned: %v) for circuits to a banned destination",
			charged[honest], lim.PeerBanned(string(honest)))
	}
	if !acl.AllowReserve(honest, nil) {
		t.Fatal("the honest source lost its reservation")
	}
	if acl.AllowConnect(hostile, nil, honest) || charged[hostile] != 1 {
		t.Fatalf("a source cut off was allowed or not charged (charged %d)", charged[hostile])
	}
}

// refusedDial is the swarm's error of a dial of p whose one address, a
// circuit, the relay refused PERMISSION_DENIED, in go-libp2p's words.
func refusedDial(p peer.ID, circuit ma.Multiaddr) error {
	return &swarm.DialError{Peer: p, DialErrors: []swarm.TransportError{{
		Address: circuit.Encapsulate(ma.StringCast("/p2p/" + p.String())),
		Cause:   errors.New(deniedPrefix + " (202)"),
	}}}
}

// A source that keeps asking the relay for a destination it was refused
// (which an honest member does not: it remembers the refusal) pays after
// the free ones, until it is cut off; one that restarted and forgot is
// not charged for asking once more, nor one that asks once a window.
func TestMemberACLChargesRepeatedRefusals(t *testing.T) {
	src, banned, other := newTestID(t), newTestID(t), newTestID(t)
	list, err := allowlist.New(allowlist.Entry{ID: src}, allowlist.Entry{ID: banned}, allowlist.Entry{ID: other})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	lim := ratelimit.New(ratelimit.Config{Now: clock})
	ban := func() {
		for !lim.PeerBanned(string(banned)) {
			lim.SpendPeer(string(banned), ratelimit.MalformedMessage)
		}
	}
	charged := map[peer.ID]int{}
	acl := &memberACL{
		cfg:     Config{Allowlist: list, Limiter: lim},
		charge:  func(p peer.ID, r ratelimit.Reason) { charged[p]++; lim.SpendPeer(string(p), r) },
		favours: newRefusalFavours(clock),
	}
	// Once a window, and once more after a restart: free.
	for range 3 {
		now = now.Add(relayRefusedTTL)
		ban()
		for range relayRefusalFree {
			if acl.AllowConnect(src, nil, banned) {
				t.Fatal("a circuit to a peer cut off was allowed")
			}
		}
	}
	if charged[src] != 0 {
		t.Fatalf("a source asking %d times a window was charged %d times", relayRefusalFree, charged[src])
	}
	// Asking again within the window: charged each time, until cut off.
	i := 0
	for ; !lim.PeerBanned(string(src)); i++ {
		if i > 4*ratelimit.DefaultBurst {
			t.Fatalf("still not cut off after %d refused circuits (charged %d)", i, charged[src])
		}
		ban()
		if acl.AllowConnect(src, nil, banned) {
			t.Fatal("a circuit to a peer cut off was allowed")
		}
	}
	if charged[src] != i {
		t.Fatalf("%d refusals past the free ones, %d charged", i, charged[src])
	}
	// Made-up destinations, each a new pair, are free only up to the
	// source's own favours.
	lim.Forgive(string(src))
	now = now.Add(relayRefusedTTL)
	charged[src] = 0
	for range relayRefusalFreePerSource + 3 {
		acl.AllowConnect(src, nil, newTestID(t))
	}
	if charged[src] != 3 {
		t.Fatalf("%d refusals for made-up destinations past the free ones, %d charged", 3, charged[src])
	}
	if !acl.AllowConnect(other, nil, src) || charged[other] != 0 {
		t.Fatal("another source paid or was refused")
	}
}

func TestRelayOf(t *testing.T) {
	r := newTestID(t)
	direct := ma.StringCast("/ip4/10.0.0.1/tcp/4001")
	if _, ok := relayOf(direct); ok || isRelayed(direct) {
		t.Fatal("a direct address taken for a relayed one")
	}
	circuit := ma.StringCast("/ip4/10.0.0.1/tcp/4001/p2p/" + r.String() + "/p2p-circuit")
	if got, ok := relayOf(circuit); !ok || got != r || !isRelayed(circuit) {
		t.Fatalf("relayOf(%s) = %s, %v", circuit, got, ok)
	}
}

// One dial asks a relay for a circuit once, whatever the number of
// circuit addresses through it; direct addresses and other relays' stay.
func TestOneCircuitPerRelay(t *testing.T) {
	r1, r2 := newTestID(t), newTestID(t)
	via := func(tpt string, r peer.ID) ma.Multiaddr {
		return ma.StringCast(tpt + "/p2p/" + r.String() + "/p2p-circuit")
	}
	addrs := []ma.Multiaddr{
		ma.StringCast("/ip4/127.0.0.2/tcp/4001"),
		via("/ip4/127.0.0.3/tcp/4001", r1),
		via("/ip4/127.0.0.4/tcp/4001", r1),
		via("/ip4/127.0.0.3/udp/4001/quic-v1", r1),
		via("/ip4/127.0.0.5/tcp/4001", r2),
	}
	perRelay := map[peer.ID]int{}
	direct := 0
	for _, ad := range oneCircuitPerRelay(addrs) {
		if r, ok := relayOf(ad.Addr); ok {
			perRelay[r]++
		} else {
			direct++
		}
	}
	if perRelay[r1] != 1 || perRelay[r2] != 1 || direct != 1 {
		t.Fatalf("ranked %v circuits per relay and %d direct, want one each", perRelay, direct)
	}
}

// noIPRM records which of its openers relayAwareRM called.
type noIPRM struct {
	network.ResourceManager
	withIP, noIP int
}

func (r *noIPRM) OpenConnection(network.Direction, bool, ma.Multiaddr) (network.ConnManagementScope, error) {
	r.withIP++
	return nil, nil
}

func (r *noIPRM) OpenConnectionNoIP(network.Direction, bool, ma.Multiaddr) (network.ConnManagementScope, error) {
	r.noIP++
	return nil, nil
}

// Relayed connections leave the per-IP limits alone: their IP is the relay's.
func TestRelayAwareResourceManager(t *testing.T) {
	inner := &noIPRM{}
	rm := relayAwareRM{ResourceManager: inner}
	r := newTestID(t)
	_, _ = rm.OpenConnection(network.DirInbound, true, ma.StringCast("/ip4/10.0.0.1/tcp/4001/p2p/"+r.String()+"/p2p-circuit"))
	_, _ = rm.OpenConnection(network.DirInbound, true, ma.StringCast("/ip4/10.0.0.1/tcp/4001"))
	if inner.noIP != 1 || inner.withIP != 1 {
		t.Fatalf("relayed opened %d times without IP, direct %d times with IP; want 1 and 1", inner.noIP, inner.withIP)
	}
}

// pingFailed calls only a timeout silence.
func TestPingFailed(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{os.ErrDeadlineExceeded, "the peer does not answer"},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), "the peer does not answer"},
		{&network.StreamError{Remote: true, TransportError: errors.New("stream reset by remote")}, "the peer refused this node"},
		{io.EOF, "the peer refused this node"},
		{&network.StreamError{}, "reset on this node's side"},
		{multistream.ErrNotSupported[protocol.ID]{}, "does not serve ping"},
		{errors.New("something else"), "ping: something else"},
	} {
		got := pingFailed(tc.err).Error()
		if !strings.Contains(got, tc.want) {
			t.Errorf("pingFailed(%v) = %q, want it to say %q", tc.err, got, tc.want)
		}
		if tc.want != "the peer does not answer" && strings.Contains(got, "does not answer") {
			t.Errorf("pingFailed(%v) = %q calls it silence", tc.err, got)
		}
		if !errors.Is(pingFailed(tc.err), tc.err) {
			t.Errorf("pingFailed(%v) does not wrap it", tc.err)
		}
	}
}

// ownRefusal puts go-libp2p's words for this node's own gater refusal in
// plain ones, and leaves every other error alone.
func TestOwnRefusal(t *testing.T) {
	p, bound, r := newTestID(t), newTestID(t), newTestID(t)
	list, err := allowlist.New(allowlist.Entry{ID: p}, allowlist.Entry{ID: r},
		allowlist.Entry{ID: bound, Addrs: []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")}})
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{cfg: Config{Allowlist: list}, limiter: ratelimit.New(ratelimit.Config{})}
	upgrader := fmt.Errorf("failed to dial: gater rejected connection with peer %s and addr /ip4/127.0.0.1/tcp/1 with direction 2", bound)
	for _, tc := range []struct {
		name     string
		err      error
		p, relay peer.ID
		want     string
	}{
		{"relayed, IP-bound entry", upgrader, bound, r, "relay: true"},
		{"direct, IP-bound entry", fmt.Errorf("dial: %w", swarm.ErrGaterDisallowedConnection), bound, "", "binds it to IP addresses"},
		{"relayed, admitted now", upgrader, p, r, "this node's own allowlist or rate limiter refuses"},
		{"not a gater refusal", errors.New("NO_RESERVATION (204)"), p, r, "NO_RESERVATION (204)"},
	} {
		got := n.ownRefusal(tc.err, tc.p, tc.relay).Error()
		if !strings.Contains(got, tc.want) || tc.want != "NO_RESERVATION (204)" && strings.Contains(got, "gater") {
			t.Errorf("%s: %q, want it to say %q", tc.name, got, tc.want)
		}
	}
}
