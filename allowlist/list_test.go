package allowlist

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestListReads(t *testing.T) {
	ids := newIDs(t, 3)
	bound := Entry{ID: ids[0], Name: "op-1", Addrs: prefixes(t, "127.0.0.2", "10.1.0.0/16")}
	v6 := Entry{ID: ids[1], Addrs: prefixes(t, "2001:db8::/32")}
	l := mustNew(t, bound, v6)

	tests := []struct {
		id        peer.ID
		ip        string
		allowed   bool
		ipAllowed bool
	}{
		{ids[0], "127.0.0.2", true, true},
		{ids[0], "::ffff:127.0.0.2", true, true},
		{ids[0], "10.1.9.9", true, true},
		{ids[0], "10.2.0.1", false, false},
		{ids[0], "2001:db8::5", false, true}, // another entry's range
		{ids[1], "2001:db8::5", true, true},
		{ids[1], "127.0.0.2", false, true},
		{ids[2], "127.0.0.2", false, true}, // not listed
		{ids[2], "192.0.2.1", false, false},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		if got := l.Allowed(tt.id, ip); got != tt.allowed {
			t.Errorf("Allowed(%s, %s) = %v, want %v", tt.id.ShortString(), ip, got, tt.allowed)
		}
		if got := l.IPAllowed(ip); got != tt.ipAllowed {
			t.Errorf("IPAllowed(%s) = %v, want %v", ip, got, tt.ipAllowed)
		}
	}

	if !l.Contains(ids[0]) || l.Contains(ids[2]) {
		t.Error("Contains is wrong")
	}
	if l.Len() != 2 {
		t.Errorf("Len = %d, want 2", l.Len())
	}
	got, ok := l.Get(ids[0])
	if !ok || got.Name != "op-1" || len(got.Addrs) != 2 {
		t.Errorf("Get = %+v, %v", got, ok)
	}
	if _, ok := l.Get(ids[2]); ok {
		t.Error("Get found an unlisted peer")
	}

	// Once an unbound entry exists, every IP may attempt a handshake.
	if err := l.Add(Entry{ID: ids[2]}); err != nil {
		t.Fatal(err)
	}
	if !l.IPAllowed(netip.MustParseAddr("192.0.2.1")) {
		t.Error("IPAllowed false with an unbound entry")
	}
	if l.Allowed(ids[0], netip.MustParseAddr("192.0.2.1")) {
		t.Error("an unbound entry widened another entry's binding")
	}
}

func TestListCopies(t *testing.T) {
	id := newID(t)
	addrs := prefixes(t, "10.0.0.0/8")
	l := mustNew(t, Entry{ID: id, Addrs: addrs})
	addrs[0] = netip.MustParsePrefix("192.0.2.0/24")

	got := l.Entries()
	got[0].Addrs[0] = netip.MustParsePrefix("198.51.100.0/24")
	e, _ := l.Get(id)
	e.Addrs[0] = netip.MustParsePrefix("198.51.100.0/24")

	if !l.Allowed(id, netip.MustParseAddr("10.1.1.1")) || l.Allowed(id, netip.MustParseAddr("192.0.2.1")) {
		t.Error("modifying a caller's slice changed the list")
	}
}

func TestNilAndZeroList(t *testing.T) {
	id := newID(t)
	ip := netip.MustParseAddr("127.0.0.1")
	var nilList *List
	if nilList.Allowed(id, ip) || nilList.IPAllowed(ip) || nilList.Contains(id) || nilList.Len() != 0 || len(nilList.Entries()) != 0 {
		t.Error("nil list admits something")
	}
	var zero List
	if zero.Allowed(id, ip) || zero.IPAllowed(ip) || zero.Len() != 0 {
		t.Error("zero list admits something")
	}
	if zero.Remove(id) {
		t.Error("Remove on empty list reported true")
	}
	if err := zero.Add(Entry{ID: id}); err != nil || !zero.Allowed(id, ip) {
		t.Errorf("zero list not usable: %v", err)
	}
}

func TestMutationsAndOnChange(t *testing.T) {
	ids := newIDs(t, 3)
	slices.SortFunc(ids, func(a, b peer.ID) int { return compareIDs(a, b) })
	a := Entry{ID: ids[0], Name: "a"}
	b := Entry{ID: ids[1], Name: "b"}
	c := Entry{ID: ids[2], Name: "c", Addrs: prefixes(t, "10.0.0.1")}
	l := mustNew(t, a)

	var got []Change
	cancel := l.OnChange(func(ch Change) { got = append(got, ch) })
	defer cancel()

	step := func(name string, mutate func() error, want Change) {
		t.Helper()
		got = nil
		if err := mutate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var wantList []Change
		if !want.IsEmpty() {
			wantList = []Change{want}
		}
		if fmt.Sprint(got) != fmt.Sprint(wantList) {
			t.Errorf("%s: changes = %+v, want %+v", name, got, wantList)
		}
	}
	b2 := b
	b2.Addrs = prefixes(t, "10.9.0.0/16")
	ok := func(f func()) func() error { return func() error { f(); return nil } }

	step("add new", func() error { return l.Add(b) }, Change{Added: []Entry{b}})
	step("add same again", func() error { return l.Add(b) }, Change{})
	step("add updated", func() error { return l.Add(b2) }, Change{Updated: []Entry{b2}})
	step("remove", ok(func() {
		if !l.Remove(a.ID) {
			t.Error("Remove of a listed peer returned false")
		}
	}), Change{Removed: []Entry{a}})
	step("remove absent", ok(func() {
		if l.Remove(a.ID) {
			t.Error("Remove of an absent peer returned true")
		}
	}), Change{})
	step("replace", func() error { return l.Replace([]Entry{a, b, c}) },
		Change{Added: []Entry{a, c}, Updated: []Entry{b}})
	step("replace identical", func() error { return l.Replace([]Entry{c, b, a}) }, Change{})
	step("replace with fewer", func() error { return l.Replace([]Entry{c}) },
		Change{Removed: []Entry{a, b}})

	// A failed mutation changes nothing and reports nothing.
	step("invalid add", ok(func() {
		if err := l.Add(Entry{ID: "bogus"}); err == nil {
			t.Error("Add accepted an invalid ID")
		}
	}), Change{})
	step("invalid replace", ok(func() {
		if err := l.Replace([]Entry{a, a}); err == nil {
			t.Error("Replace accepted a duplicate")
		}
	}), Change{})
	if ids := entryIDs(l.Entries()); !slices.Equal(ids, []peer.ID{c.ID}) {
		t.Errorf("after failed mutations, entries = %v", ids)
	}

	cancel()
	cancel() // idempotent
	step("after cancel", func() error { return l.Add(a) }, Change{})
}

func TestOnChangeReentrant(t *testing.T) {
	// A subscriber that mutates the list must neither deadlock nor see the
	// nested change before the one it is handling.
	ids := newIDs(t, 2)
	l := mustNew(t)
	var order []string
	l.OnChange(func(c Change) {
		for _, e := range c.Added {
			order = append(order, "added "+e.Name)
			if e.ID == ids[0] {
				l.Remove(ids[0]) // e.g. a peer found misbehaving
				order = append(order, "removed returned")
			}
		}
		for _, e := range c.Removed {
			order = append(order, "removed "+e.Name)
		}
	})
	if err := l.Add(Entry{ID: ids[0], Name: "x"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"added x", "removed returned", "removed x"}
	if !slices.Equal(order, want) {
		t.Errorf("order = %q, want %q", order, want)
	}
	if l.Contains(ids[0]) {
		t.Error("nested Remove had no effect")
	}
}

func TestOnChangeCancelFromCallback(t *testing.T) {
	ids := newIDs(t, 2)
	l := mustNew(t)
	calls := 0
	var cancel func()
	cancel = l.OnChange(func(Change) { calls++; cancel() })
	_ = l.Add(Entry{ID: ids[0]})
	_ = l.Add(Entry{ID: ids[1]})
	if calls != 1 {
		t.Errorf("callback ran %d times after canceling itself, want 1", calls)
	}
	if l.OnChange(nil) == nil {
		t.Error("OnChange(nil) returned a nil cancel")
	}
}

func TestOnChangePanicDoesNotWedge(t *testing.T) {
	ids := newIDs(t, 2)
	l := mustNew(t)
	var seen []peer.ID
	l.OnChange(func(c Change) {
		seen = append(seen, entryIDs(c.Added)...)
		if c.Added[0].ID == ids[0] {
			panic("subscriber bug")
		}
	})
	func() {
		defer func() { _ = recover() }()
		_ = l.Add(Entry{ID: ids[0]})
	}()
	_ = l.Add(Entry{ID: ids[1]})
	if !slices.Equal(seen, ids) {
		t.Errorf("after a subscriber panic, delivered %v, want %v", seen, ids)
	}
}

// TestConcurrentReadersAndWriters runs every operation at once under the
// race detector and checks that the changes, replayed in delivery order,
// rebuild exactly the final list: nothing lost, nothing reordered.
func TestConcurrentReadersAndWriters(t *testing.T) {
	ids := newIDs(t, 16)
	path := filepath.Join(t.TempDir(), "peers.yaml")
	l := mustNew(t)

	model := map[peer.ID]Entry{}
	var inFlight atomic.Int32
	l.OnChange(func(c Change) {
		if inFlight.Add(1) != 1 {
			t.Error("OnChange called concurrently")
		}
		// Widen the window in which a second, concurrent call would be
		// caught.
		runtime.Gosched()
		for _, e := range c.Removed {
			delete(model, e.ID)
		}
		for _, e := range slices.Concat(c.Added, c.Updated) {
			model[e.ID] = e
		}
		inFlight.Add(-1)
	})

	entry := func(r *rand.Rand) Entry {
		e := Entry{ID: ids[r.IntN(len(ids))], Name: fmt.Sprint("n", r.IntN(3))}
		if r.IntN(2) == 0 {
			e.Addrs = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(4))}), 32)}
		}
		return e
	}
	var writers, readers sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		writers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 300 {
				var err error
				switch r.IntN(10) {
				case 0:
					var batch []Entry
					for _, id := range ids[:r.IntN(len(ids))] {
						batch = append(batch, Entry{ID: id})
					}
					err = l.Replace(batch)
				case 1:
					if w == 0 { // one file, one writer: Save and Reload it
						if err = l.Save(path); err == nil {
							err = l.Reload(path)
						}
					}
				case 2, 3, 4:
					l.Remove(ids[r.IntN(len(ids))])
				default:
					err = l.Add(entry(r))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 4 {
		readers.Go(func() {
			ip := netip.MustParseAddr("10.0.0.1")
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, id := range ids {
					l.Allowed(id, ip)
					l.Contains(id)
				}
				l.IPAllowed(ip)
				es := l.Entries()
				if !slices.IsSortedFunc(es, func(a, b Entry) int { return compareIDs(a.ID, b.ID) }) {
					t.Error("Entries not sorted")
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()

	final := l.Entries()
	if len(final) != len(model) {
		t.Fatalf("replayed changes give %d entries, list has %d", len(model), len(final))
	}
	for _, e := range final {
		m, ok := model[e.ID]
		if !ok || !m.equal(e) {
			t.Errorf("entry %s: list has %+v, replayed changes give %+v", e.ID.ShortString(), e, m)
		}
	}
}

func compareIDs(a, b peer.ID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
