package dht

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// Tests of the DHT's scoping to the allowlist and of record verification
// against members gone bad.

func TestStrangerCannotJoinOrBeFound(t *testing.T) {
	net := newNet(t, 5, nil)
	s := tu.NewIdentity(t)
	ids := []tu.Identity{s}
	for _, m := range net.members {
		ids = append(ids, m.id)
	}
	// The stranger believes in the network; the network does not know it.
	stranger := net.start(s, tu.Allowlist(t, ids...), Config{Bootstrap: []peer.AddrInfo{net.members[0].info()}})

	// Proving an absence takes a fixed wait.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := stranger.dht.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stranger joined: %v", err)
	}
	for _, m := range net.members {
		if inTable(m.dht, s.ID) {
			t.Fatalf("stranger in %s's routing table", m.node.ID())
		}
		if _, err := m.dht.Find(timeout(t), s.ID); !errors.Is(err, ErrNotAllowlisted) {
			t.Fatalf("find stranger: %v", err)
		}
		if _, err := m.dht.Resolve(timeout(t), s.ID); !errors.Is(err, ErrNotAllowlisted) {
			t.Fatalf("resolve stranger: %v", err)
		}
	}
}

func TestStrangerAdmittedByOneMemberIsNotSpread(t *testing.T) {
	// Member 0 allowlists the stranger (a misconfiguration, or a member
	// vouching for a newcomer); the others do not. The stranger joins
	// member 0, but member 0 cannot hand it on.
	ids := make([]tu.Identity, 5)
	for i := range ids {
		ids[i] = tu.NewIdentity(t)
	}
	s := tu.NewIdentity(t)
	list := tu.Allowlist(t, ids...)
	net := &testNet{t: t, list: list}
	net.members = append(net.members, net.start(ids[0], tu.Allowlist(t, append(ids, s)...), Config{}))
	for _, id := range ids[1:] {
		net.members = append(net.members, net.start(id, list, Config{Bootstrap: []peer.AddrInfo{net.members[0].info()}}))
	}
	stranger := net.start(s, tu.Allowlist(t, append(ids, s)...), Config{Bootstrap: []peer.AddrInfo{net.members[0].info()}})
	net.waitReady(append(net.members, stranger)...)
	eventually(t, "the stranger in member 0's routing table", func() bool { return inTable(net.members[0].dht, s.ID) })

	net.publishAll()
	if errs := findAll(net.members, net.members); len(errs) > 0 {
		t.Fatalf("members cannot find each other: %v", errs[0])
	}
	for _, m := range net.members[1:] {
		// Member 0 answers lookups for the stranger's ID with the stranger
		// itself: the query filter drops it.
		closest, err := m.dht.kad.GetClosestPeers(timeout(t), string(s.ID))
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(closest, s.ID) {
			t.Fatalf("lookup by %s returned the stranger", m.node.ID())
		}
		if inTable(m.dht, s.ID) {
			t.Fatalf("stranger in %s's routing table", m.node.ID())
		}
		if _, err := m.dht.Find(timeout(t), s.ID); !errors.Is(err, ErrNotAllowlisted) {
			t.Fatalf("find stranger: %v", err)
		}
	}
}

func TestForgedAndStaleRecordsIgnored(t *testing.T) {
	net := newNet(t, 5, nil)
	victim := net.members[1]
	ghost := tu.NewIdentity(t) // allowlisted, never runs, so never publishes
	if err := net.list.Add(allowEntry(ghost.ID)); err != nil {
		t.Fatal(err)
	}
	mallory := newMallory(t, net)

	net.publishAll()
	genuine, ok := victim.dht.Published()
	if !ok {
		t.Fatal("victim has not published")
	}
	now := time.Now()
	forge := func(p peer.ID) Record {
		return Record{Peer: p, Addrs: []ma.Multiaddr{mallory.addr}, Seq: 1<<64 - 1, Published: now, Expires: now.Add(time.Hour)}
	}
	// Signed by mallory's key, claiming to be the victim's and the ghost's.
	mallory.put(t, victim.node.ID(), seal(t, forge(victim.node.ID()), mallory.id))
	mallory.put(t, ghost.ID, seal(t, forge(ghost.ID), mallory.id))

	for _, m := range net.members {
		r, err := m.dht.Find(timeout(t), victim.node.ID())
		// The victim may have republished since (its own schedule): any
		// record of its own will do, none of mallory's.
		if err != nil || r.Seq < genuine.Seq || r.Seq == 1<<64-1 || !sameAddrs(r.Addrs, victim.node.Host().Addrs()) {
			t.Fatalf("find victim from %s: %+v %v; want seq >= %d", m.node.ID(), r, err, genuine.Seq)
		}
		if _, err := m.dht.Find(timeout(t), ghost.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("find ghost: %v", err)
		}
	}

	// A stale record, genuinely signed by the victim, replayed by mallory:
	// the newer one wins.
	stale := genuine
	stale.Seq--
	stale.Addrs = []ma.Multiaddr{mallory.addr}
	mallory.put(t, victim.node.ID(), seal(t, stale, victim.id))
	for _, m := range net.members {
		r, err := m.dht.Find(timeout(t), victim.node.ID())
		if err != nil || r.Seq < genuine.Seq || !sameAddrs(r.Addrs, victim.node.Host().Addrs()) {
			t.Fatalf("stale record won: %+v %v", r, err)
		}
	}
}

func TestExpiredRecordMeansInactive(t *testing.T) {
	net := newNet(t, 4, nil)
	// Nodes whose clocks are behind publish records that, by everyone
	// else's clock, expired 30 minutes ago (within the 1h retention) and 2
	// hours ago (beyond it).
	lagging := func(d time.Duration) *member {
		id := tu.NewIdentity(t)
		if err := net.list.Add(allowEntry(id.ID)); err != nil {
			t.Fatal(err)
		}
		m := net.start(id, net.list, Config{
			Bootstrap: []peer.AddrInfo{net.members[0].info()},
			Now:       func() time.Time { return time.Now().Add(-d) },
		})
		net.waitReady(m)
		return m
	}
	inactive := lagging(90 * time.Minute)
	gone := lagging(3 * time.Hour)
	net.publishAll(inactive, gone)

	reader := net.members[2]
	r, err := reader.dht.Find(timeout(t), inactive.node.ID())
	if !errors.Is(err, ErrExpired) || r.Peer != inactive.node.ID() || !r.Expired(time.Now()) {
		t.Fatalf("inactive node: %+v %v", r, err)
	}
	if _, err := reader.dht.Resolve(timeout(t), inactive.node.ID()); !errors.Is(err, ErrExpired) {
		t.Fatalf("resolve inactive node: %v", err)
	}
	if _, err := reader.dht.Find(timeout(t), gone.node.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("node expired beyond retention: %v", err)
	}
}

func TestEviction(t *testing.T) {
	net := newNet(t, 6, func(_ int, c *Config) { c.SweepInterval = 20 * time.Millisecond })
	net.publishAll()
	in := func(p peer.ID) func() bool {
		return func() bool {
			for _, m := range net.members {
				if m.node.ID() != p && !inTable(m.dht, p) {
					return false
				}
			}
			return true
		}
	}
	removed, banned, evicted := net.members[5], net.members[4], net.members[3]
	eventually(t, "full routing tables", func() bool { return in(removed.node.ID())() && in(banned.node.ID())() })

	// Off the allowlist: evicted at once. A query to it already in flight
	// can put it back when it succeeds (kad-dht adds a peer that answered
	// without asking the routing-table filter again); the next sweep takes
	// it out for good.
	net.list.Remove(removed.node.ID())
	eventually(t, "the removed peer to leave every table", func() bool {
		for _, m := range net.members[:5] {
			if inTable(m.dht, removed.node.ID()) {
				return false
			}
		}
		return true
	})
	for _, m := range net.members[:5] {
		if _, err := m.dht.Find(timeout(t), removed.node.ID()); !errors.Is(err, ErrNotAllowlisted) {
			t.Fatalf("find removed peer: %v", err)
		}
	}

	// Banned by member 0's rate limiter: out of member 0's table at the
	// next sweep, and only there.
	lim := net.members[0].node.Limiter()
	for i := 0; !lim.PeerBanned(string(banned.node.ID())); i++ {
		if i > 1000 {
			t.Fatal("could not exhaust the bucket")
		}
		lim.SpendPeer(string(banned.node.ID()), ratelimit.MalformedMessage)
	}
	eventually(t, "the banned peer to leave member 0's table", func() bool { return !inTable(net.members[0].dht, banned.node.ID()) })
	if !inTable(net.members[1].dht, banned.node.ID()) {
		t.Fatal("ban at member 0 evicted the peer elsewhere")
	}

	// Evict, as the handler calls on a ConnectionLimit event, also forgets
	// the resolved address.
	d := net.members[1].dht
	if _, err := d.Resolve(timeout(t), evicted.node.ID()); err != nil {
		t.Fatal(err)
	}
	d.Evict(evicted.node.ID())
	if _, ok := d.cache.get(evicted.node.ID(), time.Now()); ok {
		t.Fatal("evicted peer still cached")
	}
}
