package p2p_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	pbv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/pb"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/util"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	mss "github.com/multiformats/go-multistream"
	pb "google.golang.org/protobuf/proto"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// Any member may act as a circuit relay: it opens a STOP stream to the node
// on its own connection, names a source, and the node runs its inbound
// handshake inside the stream. These tests play such a member from a raw
// host (the same bytes a member can make an honest relay carry after a HOP
// CONNECT of its own) and check what the node admits and charges.
// docs/security.md §7 says what is enforced.

// The limits of p2p/relay_admission.go, as docs/security.md §7 states them.
const (
	pendingPerSource = 2
	pendingPerRelay  = 8
	pendingTotal     = 16
)

// streamConn lets a raw stream carry a Noise handshake.
type streamConn struct{ network.Stream }

func (streamConn) LocalAddr() net.Addr  { return &net.TCPAddr{} }
func (streamConn) RemoteAddr() net.Addr { return &net.TCPAddr{} }

// oneByte reads one byte at a time, so that reading the STOP answer never
// swallows the node's first handshake bytes behind it.
type oneByte struct{ io.Reader }

func (r oneByte) ReadByte() (byte, error) {
	var b [1]byte
	_, err := io.ReadFull(r.Reader, b[:])
	return b[0], err
}

// openCircuit has relay (a member's raw host) open a STOP stream to victim
// announcing src as the circuit's source, and returns it once the node's
// circuit client has answered OK: from then on the node's listener holds
// the circuit, and either refuses it or starts its handshake. ok is false
// when the stream was reset instead: the node refused the circuit so fast
// that the reset overtook the answer (yamux drops what was not read yet).
func openCircuit(t *testing.T, ctx context.Context, relay host.Host, victim, src peer.ID) (s network.Stream, ok bool) {
	t.Helper()
	s, err := relay.NewStream(ctx, victim, proto.ProtoIDv2Stop)
	if err != nil {
		t.Fatal(err)
	}
	msg := pbv2.StopMessage{Type: pbv2.StopMessage_CONNECT.Enum(), Peer: &pbv2.Peer{Id: []byte(src)}}
	if err := util.NewDelimitedWriter(s).WriteMsg(&msg); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(tu.Timeout))
	defer s.SetReadDeadline(time.Time{})
	n, err := binary.ReadUvarint(oneByte{s})
	if errors.Is(err, network.ErrReset) {
		return nil, false
	}
	if err != nil || n > 4096 {
		t.Fatalf("STOP answer: %v (length %d)", err, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(s, buf); errors.Is(err, network.ErrReset) {
		return nil, false
	} else if err != nil {
		t.Fatal(err)
	}
	var resp pbv2.StopMessage
	if err := pb.Unmarshal(buf, &resp); err != nil || resp.GetStatus() != pbv2.Status_OK {
		t.Fatalf("STOP answer: %v %v", err, resp.GetStatus())
	}
	return s, true
}

// pending opens a circuit as openCircuit does and reports whether the node
// started its handshake (its multistream-select header arrives: it holds
// a pending handshake, which s now stalls) rather than refusing it (the
// stream is reset with nothing sent). The node decides at once either way;
// the deadline only bounds a broken test.
func pending(t *testing.T, ctx context.Context, relay host.Host, victim, src peer.ID) (s network.Stream, ok bool) {
	t.Helper()
	s, ok = openCircuit(t, ctx, relay, victim, src)
	if !ok {
		return nil, false
	}
	s.SetReadDeadline(time.Now().Add(tu.Timeout))
	defer s.SetReadDeadline(time.Time{})
	var b [1]byte
	n, err := s.Read(b[:])
	if n > 0 {
		return s, true
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the node neither started nor refused a relayed handshake")
	}
	return nil, false
}

// A member acting as a relay announces a member as the source of a circuit
// and runs Noise inside it with a freshly minted key. The node refuses
// every such key (relay_source_mismatch) and charges nobody: not the relay
// (a member can make an honest relay carry this), not the announced source
// (a hostile relay can name any member), not the minted key (its bucket
// would only fill the limiter's table). Before the check the minted keys
// were merely refused as strangers, charged to themselves, so the member
// could make the node run stranger handshakes without ever paying.
func TestRelayedKeyMustBeAnnouncedSource(t *testing.T) {
	for _, tc := range []struct {
		name     string
		announce func(relay, other peer.ID) peer.ID
	}{
		{"relay announces itself", func(relay, _ peer.ID) peer.ID { return relay }},
		{"relay announces another member", func(_, other peer.ID) peer.ID { return other }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			victimID, memberID, otherID := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
			// The victim listens on an address of its own: on 127.0.0.1,
			// a node of another test (this package's earlier ones, or
			// another package's run beside) dialing a peer's stale port
			// that the victim had taken reached it, declined its key,
			// and the victim charged that IP: "nobody charged" failed on
			// a stranger's handshake, not on the relayed ones.
			const ip = "127.0.0.41"
			victim := tu.Node(t, victimID, tu.Allowlist(t, memberID, otherID), tu.Listen(ip), func(c *p2p.Config) {
				c.Relay.Enabled = true // any node that relays or uses relays runs the STOP handler
				c.RateLimit = ratelimit.Config{Burst: 3}
			})
			m := tu.RawHost(t, memberID.Key, ip)
			ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
			defer cancel()
			if err := m.Connect(ctx, tu.AddrInfo(victim)); err != nil {
				t.Fatal(err)
			}
			src := tc.announce(memberID.ID, otherID.ID)
			const attempts = 8 // well past Burst
			strangers := make(map[peer.ID]bool)
			for i := 0; i < attempts; i++ {
				s, ok := openCircuit(t, ctx, m, victimID.ID, src)
				if !ok {
					t.Fatalf("attempt %d: circuit refused", i)
				}
				if err := mss.SelectProtoOrFail(noise.ID, s); err != nil {
					t.Fatalf("attempt %d: %v", i, err)
				}
				stranger := tu.NewIdentity(t)
				tpt, err := noise.New(noise.ID, stranger.Key, nil)
				if err != nil {
					t.Fatal(err)
				}
				// The initiator's Noise ends with its own last message;
				// the node decides right after.
				sc, err := tpt.SecureOutbound(ctx, streamConn{s}, victimID.ID)
				if err != nil {
					t.Fatalf("attempt %d: Noise: %v", i, err)
				}
				strangers[stranger.ID] = true
				// Wait for the verdict before the next attempt, so that
				// each attempt is judged alone.
				ev := tu.NextMatch(t, victim.Receiver(), func(r p2p.Refused) bool { return strangers[r.Peer] })
				if ev.Reason != p2p.RefusedRelaySourceMismatch || ev.IP.IsValid() {
					t.Fatalf("attempt %d refused %+v, want relay_source_mismatch without IP", i, ev)
				}
				sc.Close()
			}
			for p := range strangers {
				if victim.Host().Network().Connectedness(p) == network.Connected {
					t.Fatalf("a minted key %s is connected", p)
				}
			}
			st := victim.Limiter().Stats()
			if st.Peers.Spent.Total() != 0 || st.IPs.Spent.Total() != 0 || st.Peers.Keys != 0 {
				t.Fatalf("relayed handshakes with minted keys charged someone: peers %v (%d keys), IPs %v",
					st.Peers.Spent, st.Peers.Keys, st.IPs.Spent)
			}
			if victim.Limiter().PeerBanned(string(memberID.ID)) || victim.Limiter().PeerBanned(string(otherID.ID)) {
				t.Fatal("a member was cut off for handshakes it cannot be shown to have made")
			}
		})
	}
}

// A member acting as a relay opens circuits and says nothing in them. Each
// would hold a transient inbound slot until the accept timeout (15 s), and
// nothing can be charged for it; the node instead lets at most 2 relayed
// handshakes be pending per source announced through a relay and 8 per
// relay, refuses the rest at once (relay_busy, charged to nobody), and
// frees a slot as soon as its handshake ends.
func TestStalledRelayedHandshakesBoundedPerRelay(t *testing.T) {
	victimID, memberID := tu.NewIdentity(t), tu.NewIdentity(t)
	sources := []tu.Identity{tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)}
	victim := tu.Node(t, victimID, tu.Allowlist(t, append([]tu.Identity{memberID}, sources...)...), func(c *p2p.Config) {
		c.Relay.Enabled = true
		c.RateLimit = ratelimit.Config{Burst: 3}
	})
	m := tu.RawHost(t, memberID.Key, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*tu.Timeout)
	defer cancel()
	if err := m.Connect(ctx, tu.AddrInfo(victim)); err != nil {
		t.Fatal(err)
	}

	// Per source: the member announcing itself gets two pending
	// handshakes, no more.
	var held []network.Stream
	for i := 0; i < pendingPerSource+2; i++ {
		s, ok := pending(t, ctx, m, victimID.ID, memberID.ID)
		switch {
		case ok && i < pendingPerSource:
			held = append(held, s) // and say nothing more
		case ok:
			t.Fatalf("stalled relayed handshake %d from one source admitted; the limit is %d", i+1, pendingPerSource)
		case i < pendingPerSource:
			t.Fatalf("relayed handshake %d refused under the per-source limit", i+1)
		}
	}
	if ev := tu.Next[p2p.Refused](t, victim.Receiver()); ev.Reason != p2p.RefusedRelayBusy || ev.Peer != memberID.ID || ev.IP.IsValid() {
		t.Fatalf("refusal %+v, want relay_busy for the relay", ev)
	}

	// A slot is freed when its handshake ends: hang up one stalled
	// circuit, and the source gets a pending handshake again as soon as
	// the node has seen it go (retried until then, within a deadline).
	held[0].Reset()
	held = held[1:]
	for {
		if s, ok := pending(t, ctx, m, victimID.ID, memberID.ID); ok {
			held = append(held, s)
			break
		}
		if ctx.Err() != nil {
			t.Fatal("a hung-up relayed handshake never freed its slot")
		}
	}

	// Per relay: announcing other members, the same relay gets 8 pending
	// handshakes in all, no more.
	admittedN, refusedN := 0, 0
	for _, src := range sources {
		for j := 0; j < pendingPerSource; j++ {
			if s, ok := pending(t, ctx, m, victimID.ID, src.ID); ok {
				held = append(held, s)
				admittedN++
			} else {
				refusedN++
			}
		}
	}
	if want := pendingPerRelay - pendingPerSource; admittedN != want {
		t.Fatalf("relay got %d more pending handshakes announcing other sources, want %d (refused %d)", admittedN, want, refusedN)
	}

	st := victim.Limiter().Stats()
	if st.Peers.Spent.Total() != 0 || st.IPs.Spent.Total() != 0 {
		t.Fatalf("relayed handshakes charged: peers %v, IPs %v", st.Peers.Spent, st.IPs.Spent)
	}
	for _, s := range held {
		s.Reset()
	}
}

// Two members stalling relayed handshakes, each announcing many sources,
// hold 16 of the node's 64 transient inbound slots between them (the total
// for relayed handshakes), a third gets none, and an honest member still
// connects directly. Without the bound they held all 64 and every direct
// handshake was refused.
func TestDirectAcceptsSurviveStalledRelayedHandshakes(t *testing.T) {
	victimID, m1, m2, m3, honest := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	listed := []tu.Identity{m1, m2, m3, honest}
	var sources []tu.Identity
	for i := 0; i < 8; i++ {
		sources = append(sources, tu.NewIdentity(t))
	}
	victim := tu.Node(t, victimID, tu.Allowlist(t, append(listed, sources...)...), func(c *p2p.Config) { c.Relay.Enabled = true })
	ctx, cancel := context.WithTimeout(context.Background(), 2*tu.Timeout)
	defer cancel()
	held := 0
	for _, id := range []tu.Identity{m1, m2} {
		m := tu.RawHost(t, id.Key, "127.0.0.1")
		if err := m.Connect(ctx, tu.AddrInfo(victim)); err != nil {
			t.Fatal(err)
		}
		// 40 circuits each: 80 would be past the 64 transient slots.
		for i := 0; i < 40; i++ {
			if _, ok := pending(t, ctx, m, victimID.ID, sources[i%len(sources)].ID); ok {
				held++
			}
		}
	}
	if held != pendingTotal {
		t.Fatalf("two relays hold %d pending handshakes, want %d (8 each)", held, pendingTotal)
	}
	third := tu.RawHost(t, m3.Key, "127.0.0.1")
	if err := third.Connect(ctx, tu.AddrInfo(victim)); err != nil {
		t.Fatal(err)
	}
	if _, ok := pending(t, ctx, third, victimID.ID, m3.ID); ok {
		t.Fatalf("a third relay got a pending handshake past the total of %d", pendingTotal)
	}
	h := tu.RawHost(t, honest.Key, "127.0.0.1")
	if err := h.Connect(ctx, tu.AddrInfo(victim)); err != nil {
		t.Fatalf("an honest member cannot connect directly while %d relayed handshakes stall: %v", held, err)
	}
}
