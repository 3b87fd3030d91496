package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// hostileCase is one way to attack the victim, committed one offence at a
// time so that the test can count the offences against the budget.
type hostileCase struct {
	name string
	// reason is what each offence is charged as.
	reason ratelimit.Reason
	// victim adjusts the victim's configuration (short timeouts).
	victim func(*p2p.Config)
	// listed puts the attacker's key on the victim's allowlist, from any IP.
	listed bool
	// ipCharged: the offences happen before a key is proven (or the key
	// is a stranger's), so the source IP pays and is banned.
	ipCharged bool
	// peerCharged: the offences are charged to one key, which is banned.
	// Message-level abuse is charged to the key only: the IP may be
	// shared with honest peers (see TestHostilePeerBehindSharedIP).
	peerCharged bool
	// connected: the attacker holds a connection when it is cut off, so the
	// victim reports it Disconnected.
	connected bool
	// setup prepares the attack and returns the offence: commit(i) commits
	// offence i and returns once the victim has charged it.
	setup func(a *attacker) (commit func(i int))
	// after, if set, checks what is particular to the case once the
	// attacker is cut off.
	after func(a *attacker)
}

// TestHostilePeers runs every case of the hostile-peer suite against a
// victim with a budget of three tokens, while an honest peer exchanges
// messages with it. Each case proves that:
//
//   - the victim delivers nothing from the attacker;
//   - the attacker is cut off exactly when its budget runs out, by the
//     fourth offence and not before;
//   - the victim reports it: ConnectionLimit with the case's reason, on the
//     IP for what happens before a key is proven and on the key for what a
//     key does, and Disconnected when the attacker was connected;
//   - the attacker is refused from then on: a banned IP before any
//     handshake, a banned key from any IP;
//   - the honest peer got every message through, acked and delivered in
//     order, during all of it.
//
// The peer revoked mid-session, the message claiming another sender and the
// hostile key behind the honest peer's own IP do not fit this mould and have
// tests of their own below.
func TestHostilePeers(t *testing.T) {
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			var mutate []func(*p2p.Config)
			if tc.victim != nil {
				mutate = append(mutate, tc.victim)
			}
			s := newScene(t, mutate...)
			a := s.attacker()
			if tc.listed {
				s.allow(a.id)
			}
			tr := s.startHonest()
			commit := tc.setup(a)

			lim := s.victim.Limiter()
			banned := func() bool {
				return (tc.ipCharged && lim.IPBanned(attackerAddr)) || (tc.peerCharged && lim.PeerBanned(string(a.id.ID)))
			}
			for i := 1; i <= budget.Burst; i++ {
				commit(i)
				if banned() {
					t.Fatalf("cut off after %d offences, within a budget of %d", i, budget.Burst)
				}
			}
			commit(budget.Burst + 1)
			if tc.ipCharged && !lim.IPBanned(attackerAddr) {
				t.Fatalf("IP not cut off after %d offences", budget.Burst+1)
			}
			if tc.peerCharged && !lim.PeerBanned(string(a.id.ID)) {
				t.Fatalf("key not cut off after %d offences", budget.Burst+1)
			}

			if tc.ipCharged {
				ev := waitFor(t, s.rec, "ConnectionLimit on the attacker's IP", func(e p2p.ConnectionLimit) bool { return e.IP == attackerAddr })
				if ev.Reason != tc.reason || ev.Peer != "" || !ev.Until.After(time.Now()) {
					t.Fatalf("ConnectionLimit %+v, want reason %s", ev, tc.reason)
				}
			}
			if tc.peerCharged {
				ev := waitFor(t, s.rec, "ConnectionLimit on the attacker's key", func(e p2p.ConnectionLimit) bool { return e.Peer == a.id.ID })
				if ev.Reason != tc.reason || ev.IP.IsValid() || !ev.Until.After(time.Now()) {
					t.Fatalf("ConnectionLimit %+v, want reason %s", ev, tc.reason)
				}
			}
			if tc.connected {
				waitFor(t, s.rec, "Disconnected of the attacker", func(e p2p.Disconnected) bool { return e.Peer == a.id.ID })
			}

			if tc.ipCharged && !s.refusedAtAccept(attackerIP) {
				t.Fatal("the attacker's IP is still accepted")
			}
			if tc.peerCharged {
				for _, ip := range []string{attackerIP, elsewhereIP} {
					if _, kept := a.connect(ip); kept {
						t.Fatalf("the attacker's key is still admitted from %s", ip)
					}
				}
			}
			if tc.after != nil {
				tc.after(a)
			}
			tr.finish()
			s.onlyHonestData()
		})
	}
}

// hostileCases is the suite, in the order of the issue.
func hostileCases() []hostileCase {
	return []hostileCase{
		{
			// A key nobody listed: Noise succeeds, the gater refuses it
			// and charges the IP and the key.
			name: "unknown key", reason: ratelimit.UnknownPeer, ipCharged: true, peerCharged: true,
			setup: func(a *attacker) func(int) {
				return func(int) {
					if _, kept := a.connect(attackerIP); kept {
						a.t.Fatal("the victim kept a stranger's connection")
					}
				}
			},
		},
		{
			// A listed key bound to another IP: a stolen key, used from
			// the thief's machine.
			name: "allowlisted key from the wrong IP", reason: ratelimit.PeerIPMismatch, ipCharged: true, peerCharged: true,
			setup: func(a *attacker) func(int) {
				a.s.allow(a.id, boundIP)
				return func(int) {
					if _, kept := a.connect(attackerIP); kept {
						a.t.Fatal("the victim kept a key connecting from outside its binding")
					}
				}
			},
		},
		{
			// Bytes that are not a frame, on a properly negotiated message
			// stream.
			name: "garbage after protocol negotiation", reason: ratelimit.MalformedMessage,
			listed: true, peerCharged: true, connected: true,
			setup: func(a *attacker) func(int) {
				h := a.mustConnect(attackerIP)
				return func(i int) {
					b := a.sendRaw(h, []byte{0x05, 0xff, 0xff, 0xff, 0xff, 0xff})
					if ack, ok := ackIn(b); i <= budget.Burst && (!ok || ack.Reason != pb.Reason_MALFORMED) {
						a.t.Fatalf("offence %d: answered %x", i, b)
					}
				}
			},
		},
		oversizedCase(),
		neverAcksCase(),
		streamFloodCase(),
		{
			// Connection after connection from one listed key: past the
			// per-peer limit, each costs a token.
			name: "connection flood from one key", reason: ratelimit.ProtocolViolation,
			listed: true, peerCharged: true, connected: true,
			setup: func(a *attacker) func(int) {
				for range peerConnLimit {
					a.mustConnect(attackerIP)
				}
				return func(i int) {
					if _, kept := a.connect(attackerIP); kept {
						a.t.Fatalf("connection %d over the limit kept", i)
					}
				}
			},
		},
		{
			// Connection after connection from one IP, a fresh key each
			// time: only the IP is common to them, and it pays.
			name: "connection flood from one IP", reason: ratelimit.UnknownPeer, ipCharged: true,
			setup: func(a *attacker) func(int) {
				return func(int) {
					fresh := a.s.attacker()
					if _, kept := fresh.connect(attackerIP); kept {
						a.t.Fatal("the victim kept a stranger's connection")
					}
				}
			},
		},
		slowlorisCase(),
		{
			// TCP connections that never complete a handshake: before
			// Noise the IP is all there is to charge.
			name: "failed-handshake storm", reason: ratelimit.FailedHandshake, ipCharged: true,
			setup: func(a *attacker) func(int) {
				return func(int) { a.s.failHandshake(attackerIP) }
			},
		},
	}
}

// sendRaw writes b on a new message stream over h's connection and returns
// what the victim answered before it ended the stream.
func (a *attacker) sendRaw(h host.Host, b []byte) []byte {
	a.t.Helper()
	st, err := a.stream(h)
	if err != nil {
		a.t.Fatalf("open a stream: %v", err)
	}
	defer st.Reset()
	if _, err := st.Write(b); err != nil {
		a.t.Fatalf("write: %v", err)
	}
	return drain(a.t, st)
}

// oversizedCase: a length prefix of 1 GiB, against a 1 MiB limit. The
// victim must refuse it from the prefix alone: it answers at once although
// the body never comes, and the process has not allocated the gigabytes
// claimed.
func oversizedCase() hostileCase {
	const claimed = 1 << 30
	var before uint64
	return hostileCase{
		name: "oversized length prefix", reason: ratelimit.OversizedMessage,
		listed: true, peerCharged: true, connected: true,
		setup: func(a *attacker) func(int) {
			h := a.mustConnect(attackerIP)
			before = totalAlloc()
			return func(i int) {
				b := a.sendRaw(h, protowire.AppendVarint(nil, claimed))
				if ack, ok := ackIn(b); i <= budget.Burst && (!ok || ack.Reason != pb.Reason_TOO_LARGE) {
					a.t.Fatalf("offence %d: answered %x", i, b)
				}
			}
		},
		after: func(a *attacker) {
			// Four gigabytes were claimed; not even one was allocated.
			if got := totalAlloc() - before; got >= claimed {
				a.t.Fatalf("%d bytes allocated during the attack", got)
			}
		},
	}
}

// totalAlloc is the bytes the process has allocated so far.
func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// neverAcksCase: a listed peer that reads what the victim sends and never
// acks. Each ack timeout costs it a token; once cut off, the victim will not
// even dial it.
func neverAcksCase() hostileCase {
	const base = 1000 // the victim's message IDs, apart from the honest peer's
	var addr ma.Multiaddr
	return hostileCase{
		name: "peer that never acks", reason: ratelimit.UnansweredAck,
		listed: true, peerCharged: true, connected: true,
		victim: func(c *p2p.Config) { c.AckTimeout = 200 * time.Millisecond },
		setup: func(a *attacker) func(int) {
			h := tu.RawHost(a.t, a.id.Key, attackerIP)
			h.SetStreamHandler(p2p.ProtocolID, func(s network.Stream) {
				io.Copy(io.Discard, s) // until the victim gives up and resets
			})
			addr = h.Addrs()[0]
			return func(i int) {
				st := a.s.victimSends(a.id.ID, addr, uint64(base+i))
				if st.Reason != p2p.ReasonAckTimeout {
					a.t.Fatalf("message %d: %+v", i, st)
				}
			}
		},
		after: func(a *attacker) {
			if st := a.s.victimSends(a.id.ID, addr, base+100); st.OK || st.Reason != p2p.ReasonRejected {
				a.t.Fatalf("sending to the cut-off peer: %+v", st)
			}
		},
	}
}

// victimSends makes the victim send one message and returns its Status.
func (s *scene) victimSends(to peer.ID, addr ma.Multiaddr, id uint64) p2p.Status {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := s.victim.Send(ctx, p2p.SendMsg{Peer: to, Addr: addr, ID: id, Data: []byte("ack me")}); err != nil {
		s.t.Fatal(err)
	}
	return waitFor(s.t, s.rec, fmt.Sprintf("status of message %d", id), func(st p2p.Status) bool { return st.MsgID == id })
}

// streamFloodCase: a listed peer holds the most message streams the victim
// allows (idle, which is legal) and opens more; each one over the limit is
// reset and costs a token. No frame is ever sent, so nothing can be
// delivered.
func streamFloodCase() hostileCase {
	return hostileCase{
		name: "stream flood", reason: ratelimit.ProtocolViolation,
		listed: true, peerCharged: true, connected: true,
		setup: func(a *attacker) func(int) {
			h := a.mustConnect(attackerIP)
			// One signal per stream the victim ends; buffered for all of
			// them so that no reader ever blocks on it.
			resets := make(chan struct{}, 2*p2p.DefaultStreamsPerPeer+budget.Burst+2)
			open := func() {
				st, err := a.stream(h)
				if err != nil {
					a.t.Fatalf("open a stream: %v", err)
				}
				// Reading nothing completes protocol negotiation
				// without sending a frame.
				if _, err := st.Read(nil); err != nil {
					resets <- struct{}{}
					return
				}
				// Each stream's reader ends when the victim resets it
				// (the one over the limit, whichever lost the race) or
				// when the test closes the host.
				go func() {
					st.Read(make([]byte, 1))
					resets <- struct{}{}
				}()
			}
			for range p2p.DefaultStreamsPerPeer {
				open()
			}
			return func(i int) {
				open()
				select {
				case <-resets:
				case <-time.After(tu.Timeout):
					a.t.Fatalf("stream %d over the limit was not reset", i)
				}
			}
		},
	}
}

// slowlorisCase: a frame whose length prefix and first bytes arrive and
// whose rest never does. The victim waits ReadTimeout, then resets the
// stream and charges the peer.
func slowlorisCase() hostileCase {
	return hostileCase{
		name: "half-sent frame (slowloris)", reason: ratelimit.ProtocolViolation,
		listed: true, peerCharged: true, connected: true,
		victim: func(c *p2p.Config) { c.ReadTimeout = 250 * time.Millisecond },
		setup: func(a *attacker) func(int) {
			h := a.mustConnect(attackerIP)
			half := append(protowire.AppendVarint(nil, 100), make([]byte, 10)...)
			return func(i int) {
				if b := a.sendRaw(h, half); len(b) != 0 {
					a.t.Fatalf("offence %d: answered %x; a stalled frame must get no answer, only a reset after ReadTimeout", i, b)
				}
			}
		},
	}
}

// TestHostilePeerBehindSharedIP puts the honest peer on the attacker's IP,
// as two operators behind one NAT would be. The attacker's key is cut off
// for message-level abuse; the IP is not, because the key proved who
// misbehaved, so the honest peer on that IP keeps working throughout and
// can still connect afresh afterwards.
func TestHostilePeerBehindSharedIP(t *testing.T) {
	s := newSceneHonestAt(t, attackerIP)
	tr := s.startHonest()
	a := s.attacker()
	s.allow(a.id)
	h := a.mustConnect(attackerIP)
	for i := 1; i <= budget.Burst+1; i++ {
		a.sendRaw(h, []byte{0x05, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	waitFor(t, s.rec, "ConnectionLimit on the attacker's key", func(e p2p.ConnectionLimit) bool { return e.Peer == a.id.ID })
	if s.victim.Limiter().IPBanned(attackerAddr) {
		t.Fatal("the shared IP was banned for what one key did: message-level abuse must cost the key only")
	}
	tr.finish()

	// A fresh connection from the shared IP is still welcome.
	if err := s.honest.Send(context.Background(), p2p.DisconnectFrom{Peer: s.victimID.ID}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s.rec, "Disconnected of the honest peer", func(e p2p.Disconnected) bool { return e.Peer == s.honestID.ID })
	tr = s.startHonest()
	tr.finish()
	if ev, ok := find(s.rec.snapshot(), func(e p2p.ConnectionLimit) bool { return e.IP.IsValid() }); ok {
		t.Fatalf("IP cut off: %+v", ev)
	}
	s.onlyHonestData()
}

// TestMessageClaimingAnotherSender shows that identity comes only from
// Noise. The wire has no sender field, so there is nothing to forge and no
// offence to charge: a listed attacker whose payload claims to be the honest
// peer is delivered as itself, and an unlisted one is not delivered at all.
// Meanwhile the honest peer's own messages are all delivered as its, and
// nothing else is.
func TestMessageClaimingAnotherSender(t *testing.T) {
	s := newScene(t)
	tr := s.startHonest()
	claim := []byte("this message is from " + s.honestID.ID.String())

	// Listed: delivered, as the attacker.
	a := s.attacker()
	s.allow(a.id)
	h := a.mustConnect(attackerIP)
	b := a.sendRawKeep(h, frame(t, &pb.Data{Id: 1, Payload: claim}))
	if ack, ok := ackIn(b); !ok || ack.Reason != pb.Reason_OK {
		t.Fatalf("answered %x", b)
	}
	d := waitFor(t, s.rec, "the claiming message", func(d p2p.Data) bool { return bytes.Equal(d.Bytes, claim) })
	if d.From != a.id.ID {
		t.Fatalf("delivered as from %s, the attacker is %s", d.From, a.id.ID)
	}

	// Unlisted: refused before any stream, so there is no frame to read.
	stranger := s.attacker()
	if _, kept := stranger.connect(attackerIP); kept {
		t.Fatal("the victim kept a stranger's connection")
	}

	tr.finish()
	for _, ev := range s.rec.snapshot() {
		if d, ok := ev.(p2p.Data); ok && d.From != s.honestID.ID && d.From != a.id.ID {
			t.Fatalf("delivered from %s", d.From)
		}
	}
	if n := countData(s.rec.snapshot(), a.id.ID); n != 1 {
		t.Fatalf("%d messages delivered from the attacker, want 1", n)
	}
}

// sendRawKeep is sendRaw for a frame the victim answers without ending the
// stream: it reads one ack and returns it encoded, in its Frame.
func (a *attacker) sendRawKeep(h host.Host, b []byte) []byte {
	a.t.Helper()
	st, err := a.stream(h)
	if err != nil {
		a.t.Fatalf("open a stream: %v", err)
	}
	defer st.Reset()
	if _, err := st.Write(b); err != nil {
		a.t.Fatalf("write: %v", err)
	}
	st.SetReadDeadline(time.Now().Add(tu.Timeout))
	ack, err := readAck(bufio.NewReader(st))
	if err != nil {
		a.t.Fatalf("read ack: %v", err)
	}
	var out bytes.Buffer
	protodelim.MarshalTo(&out, pb.AckFrame(ack))
	return out.Bytes()
}

// countData counts the Data events from p.
func countData(evs []p2p.Event, p peer.ID) int {
	n := 0
	for _, ev := range evs {
		if d, ok := ev.(p2p.Data); ok && d.From == p {
			n++
		}
	}
	return n
}

// TestPeerRevokedMidSession removes a connected peer from the allowlist
// while it is sending. The victim disconnects it at once, delivers none of
// the frames that were on their way, refuses it from then on, and admits it
// again the moment it is added back; the honest peer notices none of it.
func TestPeerRevokedMidSession(t *testing.T) {
	s := newScene(t)
	tr := s.startHonest()
	a := s.attacker()
	s.allow(a.id)
	h := a.mustConnect(attackerIP)
	st, err := a.stream(h)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Reset()
	br := bufio.NewReader(st)
	const before = 5
	for i := uint64(1); i <= before; i++ {
		if _, err := st.Write(frame(t, &pb.Data{Id: i, Payload: []byte("before")})); err != nil {
			t.Fatal(err)
		}
		if ack, err := readAck(br); err != nil || ack.Reason != pb.Reason_OK {
			t.Fatalf("frame %d: ack %v, %v", i, ack, err)
		}
	}

	s.list.Remove(a.id.ID)
	// Frames in flight: written after the revocation, on the stream that
	// is still open as far as the attacker knows. Write errors are the
	// victim closing the connection, which is the point.
	for i := uint64(before + 1); i <= before+50; i++ {
		if _, err := st.Write(frame(t, &pb.Data{Id: i, Payload: []byte("after")})); err != nil {
			break
		}
	}
	waitFor(t, s.rec, "Disconnected of the revoked peer", func(e p2p.Disconnected) bool { return e.Peer == a.id.ID })
	if _, kept := a.connect(attackerIP); kept {
		t.Fatal("the revoked key was admitted again")
	}
	tr.finish()
	for _, ev := range s.rec.snapshot() {
		if d, ok := ev.(p2p.Data); ok && d.From == a.id.ID && string(d.Bytes) != "before" {
			t.Fatalf("delivered %q after the revocation", d.Bytes)
		}
	}
	if n := countData(s.rec.snapshot(), a.id.ID); n != before {
		t.Fatalf("%d messages delivered from the revoked peer, want the %d sent before", n, before)
	}

	// Added back, it connects and delivers at once.
	s.allow(a.id)
	h = a.mustConnect(attackerIP)
	b := a.sendRawKeep(h, frame(t, &pb.Data{Id: 1, Payload: []byte("back")}))
	if ack, ok := ackIn(b); !ok || ack.Reason != pb.Reason_OK || ack.Id != 1 {
		t.Fatalf("after re-adding: answered %x", b)
	}
	waitFor(t, s.rec, "the re-added peer's message", func(d p2p.Data) bool { return d.From == a.id.ID && string(d.Bytes) == "back" })
}
