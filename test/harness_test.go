package test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	manet "github.com/multiformats/go-multiaddr/net"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// budget is the victim's misbehaviour budget in the hostile suite: three
// tokens, so the fourth offence cuts the attacker off, and a refill so slow
// that no token comes back while a test runs.
var budget = ratelimit.Config{Burst: 3, Refill: time.Hour, BanDuration: time.Hour}

// Where everyone sits. The honest peer and the victim use 127.0.0.1; the
// attacker never does, so banning its IP cannot touch the honest peer.
const (
	attackerIP = "127.0.0.2"
	// elsewhereIP is where a banned key tries again, to show that the ban
	// is on the key as well as on the address.
	elsewhereIP = "127.0.0.6"
	// boundIP is where an attacker's stolen key is bound in the allowlist;
	// nobody connects from it.
	boundIP = "127.0.0.5"
)

var attackerAddr = netip.MustParseAddr(attackerIP)

// peerConnLimit is p2p's per-peer connection limit (limitPeerConns in
// p2p/resources.go): the gater charges an inbound connection past it.
const peerConnLimit = 8

// scene is one victim node, an honest peer that exchanges messages with it,
// and a record of everything the victim reports.
type scene struct {
	t        *testing.T
	list     *allowlist.List // the victim's allowlist
	victimID tu.Identity
	honestID tu.Identity
	victim   *p2p.Node
	honest   *p2p.Node
	rec      *recorder
	// honestDone is how many honest messages earlier traffic delivered.
	honestDone int
}

// newScene starts a victim with the suite's budget (then mutate applied)
// and an honest peer on 127.0.0.1 that both allowlist.
func newScene(t *testing.T, mutate ...func(*p2p.Config)) *scene {
	t.Helper()
	return newSceneHonestAt(t, "", mutate...)
}

// newSceneHonestAt is newScene with the honest peer listening on, and so
// dialing from, honestIP; "" is the default, 127.0.0.1.
func newSceneHonestAt(t *testing.T, honestIP string, mutate ...func(*p2p.Config)) *scene {
	t.Helper()
	s := &scene{t: t, victimID: tu.NewIdentity(t), honestID: tu.NewIdentity(t)}
	s.list = tu.Allowlist(t, s.victimID, s.honestID)
	cfg := append([]func(*p2p.Config){func(c *p2p.Config) { c.RateLimit = budget }}, mutate...)
	s.victim = tu.Node(t, s.victimID, s.list, cfg...)
	s.rec = record(t, s.victim)
	var at []func(*p2p.Config)
	if honestIP != "" {
		at = append(at, tu.Listen(honestIP))
	}
	s.honest = tu.Node(t, s.honestID, tu.Allowlist(t, s.victimID, s.honestID), at...)
	return s
}

// allow adds id to the victim's allowlist, bound to addrs if any.
func (s *scene) allow(id tu.Identity, addrs ...string) {
	s.t.Helper()
	e := allowlist.Entry{ID: id.ID}
	for _, a := range addrs {
		e.Addrs = append(e.Addrs, netip.MustParsePrefix(a+"/32"))
	}
	if err := s.list.Add(e); err != nil {
		s.t.Fatal(err)
	}
}

// recorder keeps every event a node delivers on its Receiver, so that a
// test can wait for one and later prove that another never came.
type recorder struct {
	mu      sync.Mutex
	events  []p2p.Event
	changed chan struct{} // closed at the next event
	done    chan struct{} // closed when the node's Receiver is
}

// record reads n's Receiver until n closes, which the test's cleanup does.
func record(t *testing.T, n *p2p.Node) *recorder {
	r := &recorder{changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ev := range n.Receiver() {
			r.mu.Lock()
			r.events = append(r.events, ev)
			close(r.changed)
			r.changed = make(chan struct{})
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		n.Close()
		<-r.done
	})
	return r
}

// wait blocks until cond holds over the events so far, and fails the test
// after tu.Timeout. cond runs under the recorder's lock: keep it cheap.
func (r *recorder) wait(t *testing.T, what string, cond func([]p2p.Event) bool) {
	t.Helper()
	deadline := time.NewTimer(tu.Timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, ch := cond(r.events), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-r.done:
			t.Fatalf("node closed while waiting for %s", what)
		case <-deadline.C:
			t.Fatalf("no %s within %s", what, tu.Timeout)
		}
	}
}

// snapshot returns the events so far.
func (r *recorder) snapshot() []p2p.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]p2p.Event(nil), r.events...)
}

// find returns the first event of type T that match accepts.
func find[T p2p.Event](evs []p2p.Event, match func(T) bool) (T, bool) {
	for _, ev := range evs {
		if e, ok := ev.(T); ok && match(e) {
			return e, true
		}
	}
	var zero T
	return zero, false
}

// waitFor waits for an event of type T that match accepts and returns it.
func waitFor[T p2p.Event](t *testing.T, r *recorder, what string, match func(T) bool) T {
	t.Helper()
	var got T
	r.wait(t, what, func(evs []p2p.Event) bool {
		var ok bool
		got, ok = find(evs, match)
		return ok
	})
	return got
}

// traffic is the honest peer sending to the victim, one acked message at a
// time, for as long as an attack lasts.
type traffic struct {
	s    *scene
	stop chan struct{}
	done chan struct{}
	// Written by the sending goroutine, read after done.
	acked   int
	failure string
}

// maxHonest bounds the honest loop in count; stop bounds it in time.
const maxHonest = 1 << 20

func honestPayload(i int) []byte { return fmt.Appendf(nil, "honest %d", i) }

// startHonest starts the honest traffic and returns once its first message
// has been acked, so that whatever the test does next overlaps it.
func (s *scene) startHonest() *traffic {
	s.t.Helper()
	tr := &traffic{s: s, stop: make(chan struct{}), done: make(chan struct{})}
	first := make(chan struct{})
	from := s.honestDone + 1
	go func() {
		defer close(tr.done)
		addr := s.victim.Addrs()[0]
		for i := from; i < from+maxHonest; i++ {
			if i > from {
				select {
				case <-tr.stop:
					return
				default:
				}
			}
			msg := p2p.SendMsg{Peer: s.victimID.ID, Addr: addr, ID: uint64(i), Data: honestPayload(i)}
			if err := s.honest.Send(context.Background(), msg); err != nil {
				tr.failure = fmt.Sprintf("send %d: %v", i, err)
				return
			}
			st, err := nextStatus(s.honest)
			if err != nil {
				tr.failure = fmt.Sprintf("message %d: %v", i, err)
				return
			}
			if !st.OK || st.MsgID != uint64(i) {
				tr.failure = fmt.Sprintf("message %d: status %+v", i, st)
				return
			}
			tr.acked = i - from + 1
			if i == from {
				close(first)
			}
		}
	}()
	select {
	case <-first:
	case <-tr.done:
		s.t.Fatalf("honest traffic did not start: %s", tr.failure)
	}
	return tr
}

// nextStatus returns the next Status on n's Receiver, skipping connection
// events.
func nextStatus(n *p2p.Node) (p2p.Status, error) {
	deadline := time.NewTimer(tu.Timeout)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-n.Receiver():
			if !ok {
				return p2p.Status{}, errors.New("node closed")
			}
			if st, ok := ev.(p2p.Status); ok {
				return st, nil
			}
		case <-deadline.C:
			return p2p.Status{}, fmt.Errorf("no status within %s", tu.Timeout)
		}
	}
}

// finish stops the honest traffic and checks that every message got
// through: each acked OK, each delivered by the victim exactly once, in
// order, from the honest peer.
func (tr *traffic) finish() {
	t := tr.s.t
	t.Helper()
	close(tr.stop)
	<-tr.done
	if tr.failure != "" {
		t.Fatalf("honest peer: %s (after %d messages acked)", tr.failure, tr.acked)
	}
	honest := tr.s.honestID.ID
	total := tr.s.honestDone + tr.acked
	tr.s.rec.wait(t, fmt.Sprintf("%d honest messages delivered", total), func(evs []p2p.Event) bool {
		n := 0
		for _, ev := range evs {
			if d, ok := ev.(p2p.Data); ok && d.From == honest {
				n++
			}
		}
		return n >= total
	})
	i := 0
	for _, ev := range tr.s.rec.snapshot() {
		d, ok := ev.(p2p.Data)
		if !ok || d.From != honest {
			continue
		}
		i++
		if !bytes.Equal(d.Bytes, honestPayload(i)) {
			t.Fatalf("honest message %d delivered as %q", i, d.Bytes)
		}
	}
	if i != total {
		t.Fatalf("%d honest messages acked, %d delivered", total, i)
	}
	tr.s.honestDone = total
	t.Logf("honest peer: %d messages acked and delivered during the attack", tr.acked)
}

// onlyHonestData fails the test if the victim delivered data from anyone
// but the honest peer.
func (s *scene) onlyHonestData() {
	s.t.Helper()
	for _, ev := range s.rec.snapshot() {
		if d, ok := ev.(p2p.Data); ok && d.From != s.honestID.ID {
			s.t.Fatalf("the victim delivered %q from %s", d.Bytes, d.From)
		}
	}
}

// attacker is a key (listed or not) attacking the scene's victim from raw
// go-libp2p hosts, which speak the protocol only as far as it chooses.
type attacker struct {
	t  *testing.T
	s  *scene
	id tu.Identity
}

func (s *scene) attacker() *attacker {
	return &attacker{t: s.t, s: s, id: tu.NewIdentity(s.t)}
}

// connect dials the victim from a fresh raw host on ip, so each call is a
// new connection, and reports whether the victim kept it. It returns once
// the question is settled: identify has run (which needs the victim's side
// of the connection up), or the connection is closed, which the victim does
// only after charging whatever got it refused.
func (a *attacker) connect(ip string) (host.Host, bool) {
	a.t.Helper()
	h := tu.RawHost(a.t, a.id.Key, ip)
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := h.Connect(ctx, tu.AddrInfo(a.s.victim)); err != nil {
		return h, false
	}
	conns := h.Network().ConnsToPeer(a.s.victimID.ID)
	if len(conns) == 0 {
		return h, false
	}
	select {
	case <-h.(interface{ IDService() identify.IDService }).IDService().IdentifyWait(conns[0]):
	case <-ctx.Done():
		a.t.Fatal("identify neither finished nor failed")
	}
	return h, !conns[0].IsClosed()
}

// mustConnect is connect for a key the victim must admit.
func (a *attacker) mustConnect(ip string) host.Host {
	a.t.Helper()
	h, ok := a.connect(ip)
	if !ok {
		a.t.Fatal("the victim refused a connection it should admit")
	}
	return h
}

// stream opens a message stream to the victim on h's existing connection,
// never dialing a new one.
func (a *attacker) stream(h host.Host) (network.Stream, error) {
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	return h.NewStream(network.WithNoDial(ctx, "attack"), a.s.victimID.ID, p2p.ProtocolID)
}

// drain reads s until the victim ends or resets it and returns what came,
// bounded in time.
func drain(t *testing.T, s network.Stream) []byte {
	t.Helper()
	s.SetReadDeadline(time.Now().Add(tu.Timeout))
	b, err := io.ReadAll(s)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the victim neither answered nor ended the stream")
	}
	return b
}

// readAck reads the next frame from br, which must be an Ack. The victim
// never has a message for an attacker in this suite, so a Data frame on an
// attacker's stream is as wrong as an unreadable one.
func readAck(br *bufio.Reader) (*pb.Ack, error) {
	var f pb.Frame
	if err := protodelim.UnmarshalFrom(br, &f); err != nil {
		return nil, err
	}
	if f.GetAck() == nil {
		return nil, fmt.Errorf("a frame that is not an ack: %v", &f)
	}
	return f.GetAck(), nil
}

// ackIn decodes the first frame in b, if it is an ack.
func ackIn(b []byte) (*pb.Ack, bool) {
	ack, err := readAck(bufio.NewReader(bytes.NewReader(b)))
	return ack, err == nil
}

// frame is f in its Frame, length-delimited, as on the wire.
func frame(t *testing.T, f *pb.Data) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := protodelim.MarshalTo(&buf, pb.DataFrame(f)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tcpFrom opens a raw TCP connection to the victim from src.
func (s *scene) tcpFrom(src string) net.Conn {
	s.t.Helper()
	a, err := manet.ToNetAddr(s.victim.Host().Addrs()[0])
	if err != nil {
		s.t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: tu.Timeout}
	c, err := d.Dial("tcp", a.String())
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// msHeader is the multistream-select greeting a libp2p listener sends first.
var msHeader = append([]byte{19}, "/multistream/1.0.0\n"...)

// refusedAtAccept reports whether a fresh TCP connection from src is closed
// without a word. An accepting node speaks first (the multistream header),
// so silence and a close mean the gater refused the IP before any
// handshake work.
func (s *scene) refusedAtAccept(src string) bool {
	s.t.Helper()
	c := s.tcpFrom(src)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(tu.Timeout))
	buf := make([]byte, len(msHeader))
	_, err := io.ReadFull(c, buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.t.Fatalf("%s: neither greeted nor refused", src)
	}
	return err != nil
}

// failHandshake sends junk on a fresh TCP connection from src and waits for
// the victim to hang up, which it does only after charging the IP.
func (s *scene) failHandshake(src string) {
	s.t.Helper()
	c := s.tcpFrom(src)
	defer c.Close()
	if _, err := c.Write(bytes.Repeat([]byte{0xff}, 64)); err != nil {
		s.t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(tu.Timeout))
	if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
		s.t.Fatal("the victim did not hang up on a failed handshake")
	}
}
