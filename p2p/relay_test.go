package p2p_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// hub is a relay and two members that reach each other only through it:
// neither is given the other's address, and b holds a reservation.
type hub struct {
	r, a, b    *p2p.Node
	ir, ia, ib tu.Identity
	reg        *prometheus.Registry // r's metrics
	regB       *prometheus.Registry // b's
}

// newHub starts the relay and the two members.
func newHub(t *testing.T) *hub {
	t.Helper()
	return newHubWithA(t, tu.NewIdentity(t), nil)
}

func TestRelayCarriesMessagesBothWays(t *testing.T) {
	h := newHub(t)
	// A message larger than go-libp2p's default circuit limit (128 KiB)
	// must pass: the relay's limits are sized for operator traffic.
	big := bytes.Repeat([]byte("x"), 512<<10)
	h.a.Sender() <- p2p.SendMsg{Peer: h.ib.ID, ID: 1, Data: big}
	c := tu.NextMatch(t, h.b.Receiver(), func(c p2p.Connected) bool { return c.Peer == h.ia.ID })
	if !c.Relayed || !c.Inbound {
		t.Fatalf("b's connection from a: %+v, want inbound and relayed", c)
	}
	d := tu.Next[p2p.Data](t, h.b.Receiver())
	if d.From != h.ia.ID || !bytes.Equal(d.Bytes, big) {
		t.Fatalf("b got %d bytes from %s", len(d.Bytes), d.From)
	}
	if st := tu.Next[p2p.Status](t, h.a.Receiver()); !st.OK || st.MsgID != 1 {
		t.Fatalf("a's status: %+v", st)
	}
	// The answer goes back over the same relayed connection.
	h.b.Sender() <- p2p.SendMsg{Peer: h.ia.ID, ID: 2, Data: []byte("reply")}
	if d := tu.Next[p2p.Data](t, h.a.Receiver()); string(d.Bytes) != "reply" {
		t.Fatalf("a got %q", d.Bytes)
	}
	if st := tu.Next[p2p.Status](t, h.b.Receiver()); !st.OK || st.MsgID != 2 {
		t.Fatalf("b's status: %+v", st)
	}
	for _, pc := range h.b.ConnectedPeers() {
		if pc.Peer == h.ia.ID && (!pc.Relayed || pc.Direct) {
			t.Fatalf("b's view of a: %+v, want relayed only", pc)
		}
	}
	st := h.r.RelayStatus()
	if !st.Service || st.Served != 1 || st.Circuits != 1 {
		t.Fatalf("relay status %+v, want the service with 1 reservation and 1 circuit", st)
	}
	if got := gaugeValue(t, h.reg, "bitvmx_p2p_relay_circuits"); got != 1 {
		t.Fatalf("relay_circuits = %v", got)
	}
	if got := gaugeValue(t, h.regB, "bitvmx_p2p_relay_reservations"); got != 1 {
		t.Fatalf("b's relay_reservations = %v", got)
	}
	if got := gaugeValue(t, h.regB, "bitvmx_p2p_relayed_connections"); got != 1 {
		t.Fatalf("b's relayed_connections = %v", got)
	}
	bs := h.b.RelayStatus()
	if bs.Reservations != 1 || len(bs.Relays) != 1 || !bs.Relays[0].Connected || bs.Relays[0].Peer != h.ir.ID {
		t.Fatalf("b's relay status %+v", bs)
	}
}

// gaugeValue is the value of the one gauge called name in reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestRelayRefusesStrangers(t *testing.T) {
	h := newHub(t)
	stranger := tu.NewIdentity(t)
	sh := tu.RawHost(t, stranger.Key, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	rInfo := tu.AddrInfo(h.r)

	// No reservation: the relay's gater refuses the key before the
	// reservation protocol is ever reached.
	if _, err := client.Reserve(ctx, sh, rInfo); err == nil {
		t.Fatal("a stranger got a reservation")
	}
	if ev := tu.NextMatch(t, h.r.Receiver(), func(r p2p.Refused) bool { return r.Peer == stranger.ID }); ev.Reason != p2p.RefusedUnknownPeer {
		t.Fatalf("relay refused the stranger with %+v", ev)
	}
	// No circuit to a member either.
	circuit := ma.StringCast("/p2p/" + h.ir.ID.String() + "/p2p-circuit")
	ai := peer.AddrInfo{ID: h.ib.ID, Addrs: []ma.Multiaddr{rInfo.Addrs[0].Encapsulate(circuit)}}
	if err := sh.Connect(network.WithAllowLimitedConn(ctx, "test"), ai); err == nil {
		if s, err := sh.NewStream(network.WithAllowLimitedConn(ctx, "test"), h.ib.ID, p2p.ProtocolID); err == nil {
			s.Reset()
			t.Fatal("a stranger opened a stream to a member through the relay")
		}
	}
	if got := h.r.RelayStatus(); got.Circuits != 0 {
		t.Fatalf("relay carries %d circuits after the stranger", got.Circuits)
	}
	// Refusing the stranger cost the relay nothing: its IP (loopback
	// here, the relay's in general) is not charged at b.
	if st := h.b.Limiter().Stats(); st.IPs.Spent.Total() != 0 {
		t.Fatalf("b's limiter charged IPs %d times after a relayed refusal", st.IPs.Spent.Total())
	}
}

func TestRelayedIPBoundEntry(t *testing.T) {
	bound := netip.MustParsePrefix("10.9.9.9/32")
	t.Run("refused", func(t *testing.T) {
		h := newHubFor(t, func(a peer.ID) allowlist.Entry { return allowlist.Entry{ID: a, Addrs: []netip.Prefix{bound}} })
		h.a.Sender() <- p2p.SendMsg{Peer: h.ib.ID, ID: 1, Data: []byte("hi")}
		ev := tu.NextMatch(t, h.b.Receiver(), func(r p2p.Refused) bool { return r.Peer == h.ia.ID })
		if ev.Reason != p2p.RefusedRelayNotAllowed || ev.IP.IsValid() {
			t.Fatalf("b refused a with %+v, want relay_not_allowed and no IP", ev)
		}
		if st := tu.Next[p2p.Status](t, h.a.Receiver()); st.OK {
			t.Fatalf("a's message was acked: %+v", st)
		}
	})
	t.Run("allowed with relay: true", func(t *testing.T) {
		h := newHubFor(t, func(a peer.ID) allowlist.Entry {
			return allowlist.Entry{ID: a, Addrs: []netip.Prefix{bound}, Relay: true}
		})
		h.a.Sender() <- p2p.SendMsg{Peer: h.ib.ID, ID: 1, Data: []byte("hi")}
		if d := tu.Next[p2p.Data](t, h.b.Receiver()); d.From != h.ia.ID {
			t.Fatalf("b got %+v", d)
		}
	})
}

// newHubFor is newHub with b's entry for a made by entry from a's ID.
func newHubFor(t *testing.T, entry func(peer.ID) allowlist.Entry) *hub {
	t.Helper()
	ia := tu.NewIdentity(t)
	e := entry(ia.ID)
	return newHubWithA(t, ia, &e)
}

// newHubWithA is newHub with a's identity chosen by the caller and, when
// bEntryForA is given, b's allowlist entry for a (to test IP bindings
// over a relay).
func newHubWithA(t *testing.T, ia tu.Identity, bEntryForA *allowlist.Entry) *hub {
	t.Helper()
	h := &hub{ir: tu.NewIdentity(t), ia: ia, ib: tu.NewIdentity(t), reg: prometheus.NewRegistry(), regB: prometheus.NewRegistry()}
	h.r = tu.Node(t, h.ir, tu.Allowlist(t, h.ia, h.ib), func(c *p2p.Config) {
		c.Relay.Enabled = true
		c.Metrics = h.reg
	})
	relayAddr := h.r.Addrs()[0]
	entryA := allowlist.Entry{ID: h.ia.ID}
	if bEntryForA != nil {
		entryA = *bEntryForA
	}
	listB, err := allowlist.New(allowlist.Entry{ID: h.ir.ID}, entryA)
	if err != nil {
		t.Fatal(err)
	}
	h.b = tu.Node(t, h.ib, listB, func(c *p2p.Config) {
		c.Relays = []ma.Multiaddr{relayAddr}
		c.Metrics = h.regB
	})
	tu.NextMatch(t, h.b.Receiver(), func(ev p2p.RelayReservations) bool { return ev.Count == 1 })
	h.a = tu.Node(t, h.ia, tu.Allowlist(t, h.ir, h.ib), func(c *p2p.Config) {
		c.Relays = []ma.Multiaddr{relayAddr}
		c.Reachability = network.ReachabilityPublic
	})
	return h
}

func TestRelayConfigErrors(t *testing.T) {
	id := tu.NewIdentity(t)
	list := tu.Allowlist(t, id)
	for _, bad := range []string{
		"/ip4/127.0.0.1/tcp/4001",                       // no peer ID
		"/ip4/127.0.0.1/tcp/4001/p2p/" + id.ID.String(), // itself
	} {
		_, err := p2p.New(p2p.Config{Key: id.Key, Allowlist: list, Relays: []ma.Multiaddr{ma.StringCast(bad)}})
		if err == nil {
			t.Fatalf("relay %s accepted", bad)
		}
	}
}

func TestCheckWays(t *testing.T) {
	h := newHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	// Before any connection a knows b only through the relay.
	res, err := h.a.Check(ctx, h.ib.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Direct.Tried || res.Direct.Err == nil {
		t.Fatalf("direct way %+v, want not tried: no address", res.Direct)
	}
	if len(res.Relays) != 1 || res.Relays[0].Err != nil || res.Relays[0].Relay != h.ir.ID || res.Relays[0].RTT <= 0 {
		t.Fatalf("relayed ways %+v, want one that works", res.Relays)
	}
	// Given b's direct address (loopback here), the direct way works too.
	h.a.AddAddr(h.ib.ID, h.b.Addrs()[0], time.Minute)
	if res, err = h.a.Check(ctx, h.ib.ID); err != nil {
		t.Fatal(err)
	}
	if !res.Direct.Tried || res.Direct.Err != nil || res.Direct.RTT <= 0 {
		t.Fatalf("direct way %+v", res.Direct)
	}
	if _, err := h.a.Check(ctx, tu.NewIdentity(t).ID); !errors.Is(err, p2p.ErrNotAllowlisted) {
		t.Fatalf("check of a stranger: %v", err)
	}
}

// A relay that restarts gets its members' reservations back without anyone
// doing anything: AutoRelay notices the lost one and reserves again.
func TestReservationRenewedAfterRelayRestart(t *testing.T) {
	ir, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	relayList := tu.Allowlist(t, ib)
	// A port of its own: the relay comes back on it.
	r, err := p2p.New(p2p.Config{Key: ir.Key, Allowlist: relayList, Relay: p2p.RelayService{Enabled: true},
		ListenAddrs: []ma.Multiaddr{tu.LoopbackAddr(t)}})
	if err != nil {
		t.Fatal(err)
	}
	relayAddr := r.Addrs()[0]
	b := tu.Node(t, ib, tu.Allowlist(t, ir), func(c *p2p.Config) { c.Relays = []ma.Multiaddr{relayAddr} })
	tu.NextMatch(t, b.Receiver(), func(ev p2p.RelayReservations) bool { return ev.Count == 1 })

	r.Close()
	tu.NextMatch(t, b.Receiver(), func(ev p2p.RelayReservations) bool { return ev.Count == 0 })
	tpt, _ := peer.SplitAddr(relayAddr)
	tu.Node(t, ir, relayList, func(c *p2p.Config) {
		c.Relay.Enabled = true
		c.ListenAddrs = []ma.Multiaddr{tpt} // the port the member knows
	})
	tu.NextMatch(t, b.Receiver(), func(ev p2p.RelayReservations) bool { return ev.Count == 1 })
}

// Relaying names the peers whose connections carry a reservation or a
// circuit, at each end, and no other.
func TestRelayingPeers(t *testing.T) {
	h := newHub(t)
	if !h.r.Relaying(h.ib.ID) || !h.b.Relaying(h.ir.ID) {
		t.Fatal("the reservation's connection is not relaying at both ends")
	}
	if h.r.Relaying(h.ia.ID) || h.a.Relaying(h.ir.ID) || h.a.Relaying(h.ib.ID) {
		t.Fatal("relaying before any circuit")
	}
	h.a.Sender() <- p2p.SendMsg{Peer: h.ib.ID, ID: 1, Data: []byte("hi")}
	if st := tu.Next[p2p.Status](t, h.a.Receiver()); !st.OK {
		t.Fatalf("a's status: %+v", st)
	}
	if !h.a.Relaying(h.ir.ID) || !h.r.Relaying(h.ia.ID) {
		t.Fatal("the connection carrying the circuit is not relaying at both ends")
	}
	// The relayed connection is no relay's: closing it cuts nothing else.
	if h.a.Relaying(h.ib.ID) || h.b.Relaying(h.ia.ID) {
		t.Fatal("the relayed connection itself counts as relaying")
	}
}

// A relayed way that the peer refuses was reported as "the peer does not
// answer": its refusal resets our first stream, which is an answer. One
// that this node's own allowlist refuses was reported in go-libp2p's words
// ("gater rejected connection ... with direction 2").
func TestCheckSaysWhoRefused(t *testing.T) {
	bound := netip.MustParsePrefix("10.9.9.9/32")
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()

	t.Run("the peer", func(t *testing.T) {
		h := newHubFor(t, func(a peer.ID) allowlist.Entry { return allowlist.Entry{ID: a, Addrs: []netip.Prefix{bound}} })
		res, err := h.a.Check(ctx, h.ib.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ev := tu.NextMatch(t, h.b.Receiver(), func(r p2p.Refused) bool { return r.Peer == h.ia.ID }); ev.Reason != p2p.RefusedRelayNotAllowed {
			t.Fatalf("b refused a with %+v", ev)
		}
		if len(res.Relays) != 1 || res.Relays[0].Err == nil {
			t.Fatalf("relayed ways %+v, want one that fails", res.Relays)
		}
		msg := res.Relays[0].Err.Error()
		if strings.Contains(msg, "does not answer") || !strings.Contains(msg, "the peer refused this node") {
			t.Fatalf("the peer's refusal reported as %q", msg)
		}
	})

	t.Run("this node", func(t *testing.T) {
		ir, ia, ib := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
		r := tu.Node(t, ir, tu.Allowlist(t, ia, ib), func(c *p2p.Config) { c.Relay.Enabled = true })
		b := tu.Node(t, ib, tu.Allowlist(t, ir, ia), func(c *p2p.Config) { c.Relays = []ma.Multiaddr{r.Addrs()[0]} })
		tu.NextMatch(t, b.Receiver(), func(ev p2p.RelayReservations) bool { return ev.Count == 1 })
		listA, err := allowlist.New(allowlist.Entry{ID: ir.ID}, allowlist.Entry{ID: ib.ID, Addrs: []netip.Prefix{bound}})
		if err != nil {
			t.Fatal(err)
		}
		a := tu.Node(t, ia, listA, func(c *p2p.Config) {
			c.Relays = []ma.Multiaddr{r.Addrs()[0]}
			c.Reachability = network.ReachabilityPublic
		})
		res, err := a.Check(ctx, ib.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Relays) != 1 || res.Relays[0].Err == nil {
			t.Fatalf("relayed ways %+v, want one that fails", res.Relays)
		}
		pc := res.Relays[0]
		if msg := pc.Err.Error(); pc.Tried || strings.Contains(msg, "gater") ||
			!strings.Contains(msg, "this node's allowlist refuses it") || !strings.Contains(msg, "relay: true") {
			t.Fatalf("a's own refusal reported as tried=%v %q", pc.Tried, msg)
		}
	})
}

// A member cut off at the relay is asked for through it once: the relay
// refuses the circuit (PERMISSION_DENIED) for the destination's sake, the
// dialing member remembers it and fails its next send at once, without
// asking the relay again (which would now cost it a token there), and the
// relay charged it nothing. b's second address through the relay (which b
// could have advertised, with any transport part) does not make a's one
// dial ask the relay twice.
func TestRelayRefusedDestinationNotAskedAgain(t *testing.T) {
	h := newHub(t)
	h.a.AddAddr(h.ib.ID, ma.StringCast("/ip4/127.0.0.1/tcp/1/p2p/"+h.ir.ID.String()+"/p2p-circuit"), time.Hour)
	for i := 0; !h.r.Limiter().PeerBanned(string(h.ib.ID)); i++ {
		if i > 10*ratelimit.DefaultBurst {
			t.Fatal("b is not cut off at the relay")
		}
		h.r.Charge(h.ib.ID, ratelimit.MalformedMessage)
	}
	for id := uint64(1); id <= 3; id++ {
		h.a.Sender() <- p2p.SendMsg{Peer: h.ib.ID, ID: id, Data: []byte("to b")}
		st := tu.NextMatch(t, h.a.Receiver(), func(st p2p.Status) bool { return st.MsgID == id })
		if st.OK || !errors.Is(st.Err, p2p.ErrRelayRefusedDestination) {
			t.Fatalf("send %d: %+v, want it failed with ErrRelayRefusedDestination", id, st)
		}
	}
	// Nor does "p2pnode check", which dials its circuits itself.
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	res, err := h.a.Check(ctx, h.ib.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Relays) != 1 || res.Relays[0].Tried || !errors.Is(res.Relays[0].Err, p2p.ErrRelayRefusedDestination) {
		t.Fatalf("relayed ways %+v, want one not tried, for the relay's refusal", res.Relays)
	}
	// go-libp2p's relay counts a request once it has written the answer:
	// the first refusal's count may come after a has read it.
	if got := counterReaching(t, h.reg, "bitvmx_p2p_relay_requests_total", "status", "permission_denied", 1); got != 1 {
		t.Fatalf("the relay refused %v circuits, want 1: a asked it again", got)
	}
	if h.r.Limiter().PeerBanned(string(h.ia.ID)) {
		t.Fatal("a is cut off at the relay")
	}
	if got := counterValue(t, h.reg, "bitvmx_p2p_misbehaviour_total", "reason", ratelimit.Unauthorized.String()); got != 0 {
		t.Fatalf("the relay charged %v unauthorized tokens", got)
	}
}

// counterReaching is counterValue once it has reached at least want, or at
// tu.Timeout: for a counter that a library moves after the answer its
// caller waited for, with no event to wait on.
func counterReaching(t *testing.T, reg *prometheus.Registry, name, label, value string, want float64) float64 {
	t.Helper()
	deadline := time.Now().Add(tu.Timeout)
	for {
		got := counterValue(t, reg, name, label, value)
		if got >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond) // a poll: the counter moves with no event to wait on
	}
}

// counterValue is the value of the counter called name in reg whose label
// has value.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A member's connection to its static relay counts as relaying before the
// relay has granted anything: AutoRelay connects, waits for identify, and
// only then reserves, and the handler closing the connection for idleness
// in between failed the reservation, retried relayRetry later on a new
// connection that met the same timer. Here the relay never grants one (its
// relay service is off), so the member's relay is relaying for want of a
// reservation alone; the relay, which has no way to know, does not count
// the member.
func TestStaticRelayIsRelayingBeforeReservation(t *testing.T) {
	ir, im := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ir, im)
	r := tu.Node(t, ir, list)
	m := tu.Node(t, im, list, func(c *p2p.Config) { c.Relays = []ma.Multiaddr{r.Addrs()[0]} })
	tu.NextMatch(t, m.Receiver(), func(ev p2p.Connected) bool { return ev.Peer == ir.ID })
	if st := m.RelayStatus(); st.Reservations != 0 {
		t.Fatalf("m holds %d reservations on a node that relays nothing", st.Reservations)
	}
	if !m.Relaying(ir.ID) {
		t.Fatal("the member's connection to its static relay does not count as relaying before the reservation")
	}
	if r.Relaying(im.ID) {
		t.Fatal("the relay counts a member that holds no reservation")
	}
}
