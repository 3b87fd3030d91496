package dht

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// memberView is the membership document in force on a set of nodes, what
// gossip.Service.Current returns to the DHT.
type memberView struct {
	doc atomic.Pointer[membership.Document]
}

func newView(doc *membership.Document) *memberView {
	v := new(memberView)
	v.doc.Store(doc)
	return v
}

func (v *memberView) current() *membership.Document { return v.doc.Load() }

// apply puts doc in force on the nodes that share list, in the order
// gossip.Service applies a version: the document, then the allowlist.
func (v *memberView) apply(t *testing.T, list *allowlist.List, doc *membership.Document) {
	t.Helper()
	v.doc.Store(doc)
	if err := list.Replace(doc.Entries()); err != nil {
		t.Fatal(err)
	}
}

// waitRepublished waits until m has published a record newer than seq: on
// a change of members the DHT republishes by itself, and says so through
// nothing but Published.
func waitRepublished(t *testing.T, m *member, seq uint64) {
	t.Helper()
	deadline := time.After(2 * opTimeout)
	for {
		next := m.dht.pub.published() // before the check: no publication is missed
		if r, ok := m.dht.Published(); ok && r.Seq > seq {
			return
		}
		select {
		case <-next:
		case <-deadline:
			t.Fatalf("%s did not republish after the change of members", m.node.ID())
		}
	}
}

// With a membership document, records are sealed to its members: members
// of either key type find each other; when version 2 removes a member and
// adds another, the nodes republish at once, sealed to version 2: the new
// member reads them, and the removed one cannot, even holding the bytes.
func TestSealedRecordsMembersOnly(t *testing.T) {
	a, b, c := tu.NewIdentity(t), edIdentity(t), tu.NewIdentity(t)
	removed, added := tu.NewIdentity(t), tu.NewIdentity(t)
	// Members that run no node make the records as large as a
	// 100-member network's (about 10 KB), through kad-dht's store and
	// lookups.
	others := make([]tu.Identity, 96)
	for i := range others {
		others[i] = tu.NewIdentity(t)
	}
	v1 := memberDoc(t, 1, append([]tu.Identity{a, b, c, removed}, others...)...)
	v2 := memberDoc(t, 2, append([]tu.Identity{a, b, c, added}, others...)...)
	view := newView(v1)
	list, err := v1.Allowlist()
	if err != nil {
		t.Fatal(err)
	}
	net := &testNet{t: t, list: list}
	mA := net.start(a, list, Config{Membership: view.current})
	boot := []peer.AddrInfo{mA.info()}
	mB := net.start(b, list, Config{Membership: view.current, Bootstrap: boot})
	mC := net.start(c, list, Config{Membership: view.current, Bootstrap: boot})
	// The member to be removed keeps version 1 (its own list and view), as
	// a node that never applies its removal.
	rList, err := v1.Allowlist()
	if err != nil {
		t.Fatal(err)
	}
	mR := net.start(removed, rList, Config{Membership: newView(v1).current, Bootstrap: boot})
	v1Members := []*member{mA, mB, mC, mR}
	net.waitReady(v1Members...)
	net.publishAll(v1Members...)
	if errs := findAll(v1Members, v1Members); len(errs) > 0 {
		t.Fatalf("version 1: %d lookups failed, first: %v", len(errs), errs[0])
	}

	v2Members := []*member{mA, mB, mC}
	var before []uint64
	for _, m := range v2Members {
		r, _ := m.dht.Published()
		before = append(before, r.Seq)
	}
	view.apply(t, list, v2)
	for i, m := range v2Members {
		waitRepublished(t, m, before[i])
	}

	mN := net.start(added, list, Config{Membership: view.current, Bootstrap: boot})
	net.waitReady(mN)
	net.publishAll(mN)
	v2Members = append(v2Members, mN)
	if errs := findAll(v2Members, v2Members); len(errs) > 0 {
		t.Fatalf("version 2: %d lookups failed, first: %v", len(errs), errs[0])
	}

	// The removed member, given A's current record: it can check that the
	// record is A's and live, but not read it.
	key := RecordKey(a.ID)
	data, err := mB.dht.kad.GetValue(timeout(t), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 9000 {
		t.Fatalf("a record for 100 members of %d bytes", len(data))
	}
	hdr, err := mR.dht.val.verify(key, data)
	if err != nil {
		t.Fatalf("the removed member cannot check the record: %v", err)
	}
	if after, _ := mA.dht.Published(); hdr.Seq != after.Seq {
		t.Fatalf("got seq %d, A's newest is %d", hdr.Seq, after.Seq)
	}
	if r, err := mR.dht.unseal(a.ID, hdr, data); !errors.Is(err, ErrNotRecipient) {
		t.Fatalf("the removed member read A's record sealed after its removal: %+v, %v", r, err)
	}
}

// An expired sealed record still reports its node inactive: to a member,
// with the addresses it last announced; to a node it was not sealed to,
// without them.
func TestSealedExpiredMeansInactive(t *testing.T) {
	ids := []tu.Identity{tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)}
	lag := tu.NewIdentity(t)
	doc := memberDoc(t, 1, append(ids, lag)...)
	list, err := doc.Allowlist()
	if err != nil {
		t.Fatal(err)
	}
	net := &testNet{t: t, list: list}
	view := newView(doc)
	m0 := net.start(ids[0], list, Config{Membership: view.current})
	boot := []peer.AddrInfo{m0.info()}
	m1 := net.start(ids[1], list, Config{Membership: view.current, Bootstrap: boot})
	m2 := net.start(ids[2], list, Config{Membership: view.current, Bootstrap: boot})
	// A node whose clock is 90 minutes behind (its records expired 30
	// minutes ago by the others' clocks, within the retention), and which
	// seals to itself and m1 only.
	lagging := net.start(lag, list, Config{
		Membership: func() *membership.Document { return memberDoc(t, 1, lag, ids[1]) },
		Bootstrap:  boot,
		Now:        func() time.Time { return time.Now().Add(-90 * time.Minute) },
	})
	net.waitReady(m0, m1, m2, lagging)
	net.publishAll(lagging)

	r, err := m1.dht.Find(timeout(t), lag.ID)
	if !errors.Is(err, ErrExpired) || r.Peer != lag.ID || !sameAddrs(r.Addrs, lagging.node.Host().Addrs()) {
		t.Fatalf("member reading an inactive node: %+v, %v", r, err)
	}
	r, err = m2.dht.Find(timeout(t), lag.ID)
	if !errors.Is(err, ErrExpired) || r.Peer != lag.ID || len(r.Addrs) != 0 || !r.Expired(time.Now()) {
		t.Fatalf("non-recipient reading an inactive node: %+v, %v", r, err)
	}
	if _, err := m2.dht.Resolve(context.Background(), lag.ID); !errors.Is(err, ErrExpired) {
		t.Fatalf("resolve inactive node: %v", err)
	}
}
