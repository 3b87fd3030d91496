// Package testutil holds helpers shared by the project's tests: identities,
// nodes on loopback, bare go-libp2p hosts, and waiting for events with a
// deadline instead of sleeping.
package testutil

import (
	"crypto/rand"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// Timeout is how long a test waits for an event before failing. Generous:
// CI runs the race detector on two cores.
const Timeout = 15 * time.Second

// Identity is a key and its peer ID.
type Identity struct {
	Key crypto.PrivKey
	ID  peer.ID
}

// NewIdentity makes a fresh secp256k1 identity.
func NewIdentity(t testing.TB) Identity {
	t.Helper()
	k, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return Identity{Key: k, ID: id}
}

// Allowlist builds a list admitting the given identities from any IP.
func Allowlist(t testing.TB, ids ...Identity) *allowlist.List {
	t.Helper()
	var entries []allowlist.Entry
	for _, id := range ids {
		entries = append(entries, allowlist.Entry{ID: id.ID})
	}
	l, err := allowlist.New(entries...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Node starts a node for id on 127.0.0.1 with a free port, closed when the
// test ends. mutate, if given, adjusts the config first.
func Node(t testing.TB, id Identity, list *allowlist.List, mutate ...func(*p2p.Config)) *p2p.Node {
	t.Helper()
	cfg := p2p.Config{Key: id.Key, Allowlist: list}
	for _, m := range mutate {
		m(&cfg)
	}
	n, err := p2p.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// Listen returns a config mutator listening on ip (e.g. "127.0.0.2") with
// reuseport on, so that the node also dials out from that IP.
func Listen(ip string) func(*p2p.Config) {
	return func(c *p2p.Config) {
		c.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/" + ip + "/tcp/0")}
		c.ReusePort = true
	}
}

// RawHost starts a bare go-libp2p host (TCP, Noise, yamux, no gater) on ip:
// a stand-in for an independent implementation or an attacker. With
// reuseport it dials out from ip.
func RawHost(t testing.TB, key crypto.PrivKey, ip string) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings("/ip4/"+ip+"/tcp/0"),
		libp2p.NoTransports,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// AddrInfo is n's identity and addresses, for raw hosts to connect to.
func AddrInfo(n *p2p.Node) peer.AddrInfo {
	ai, err := peer.AddrInfoFromP2pAddr(n.Addrs()[0])
	if err != nil {
		panic(err)
	}
	return *ai
}

// Next waits for the next event of type T on ch, skipping others, and fails
// the test after Timeout.
// The channel may carry any event type (p2p.Event, handler.Event...).
func Next[T, E any](t testing.TB, ch <-chan E) T {
	t.Helper()
	return NextMatch(t, ch, func(T) bool { return true })
}

// NextMatch waits for the next event of type T that match accepts. When it
// fails it names the last events it skipped: an event a test skips (a
// failed Status, say) is often the reason the one it waits for never came.
func NextMatch[T, E any](t testing.TB, ch <-chan E, match func(T) bool) T {
	t.Helper()
	mustCarry[T, E](t)
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	var skipped skips[E]
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				var zero T
				t.Fatalf("channel closed while waiting for %T%s", zero, skipped)
			}
			if e, ok := any(ev).(T); ok && match(e) {
				return e
			}
			skipped.add(ev)
		case <-deadline.C:
			var zero T
			t.Fatalf("no %T within %s%s", zero, Timeout, skipped)
		}
	}
}

// skips keeps the last events NextMatch passed over, for its failure
// message; formatted only then.
type skips[E any] struct {
	last  [8]E
	count int
}

func (s *skips[E]) add(ev E) {
	s.last[s.count%len(s.last)] = ev
	s.count++
}

// String lists the events kept, oldest first, each cut to a line's length.
func (s skips[E]) String() string {
	if s.count == 0 {
		return ""
	}
	var b strings.Builder
	noun := "events"
	if s.count == 1 {
		noun = "event"
	}
	fmt.Fprintf(&b, "; skipped %d %s", s.count, noun)
	if s.count > len(s.last) {
		fmt.Fprintf(&b, ", the last %d", len(s.last))
	}
	b.WriteString(":")
	for i := max(0, s.count-len(s.last)); i < s.count; i++ {
		line := fmt.Sprintf("%T %+v", s.last[i%len(s.last)], s.last[i%len(s.last)])
		if len(line) > 300 {
			line = line[:300] + "..."
		}
		b.WriteString("\n\t")
		b.WriteString(line)
	}
	return b.String()
}

// None asserts that no event of type T arrives on ch within d. It is for
// proving an absence, the one place a test must wait a fixed time.
func None[T, E any](t testing.TB, ch <-chan E, d time.Duration) {
	t.Helper()
	mustCarry[T, E](t)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if e, ok := any(ev).(T); ok {
				t.Fatalf("unexpected %T: %+v", e, e)
			}
		case <-timer.C:
			return
		}
	}
}

// mustCarry fails the test when no value of type T can arrive on a channel
// of E: waiting for one would time out, and proving its absence with None
// would pass whatever the code did (handler.Request where the handler
// sends *handler.Request).
func mustCarry[T, E any](t testing.TB) {
	t.Helper()
	if e := reflect.TypeFor[E](); e.Kind() == reflect.Interface && !reflect.TypeFor[T]().Implements(e) {
		t.Fatalf("a channel of %v never carries %v", e, reflect.TypeFor[T]())
	}
}
