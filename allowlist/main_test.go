package allowlist

import (
	"crypto/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newID returns a fresh secp256k1 peer ID, the node's default key type.
func newID(tb testing.TB) peer.ID {
	tb.Helper()
	sk, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func newIDs(tb testing.TB, n int) []peer.ID {
	tb.Helper()
	ids := make([]peer.ID, n)
	for i := range ids {
		ids[i] = newID(tb)
	}
	return ids
}

func prefixes(tb testing.TB, ss ...string) []netip.Prefix {
	tb.Helper()
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := parsePrefix(s)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func mustNew(tb testing.TB, entries ...Entry) *List {
	tb.Helper()
	l, err := New(entries...)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// recv waits for a value on ch, failing the test after a deadline so that a
// missing callback cannot hang the run.
func recv[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		tb.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// ids returns the IDs of entries, in order.
func entryIDs(entries []Entry) []peer.ID {
	out := make([]peer.ID, len(entries))
	for i, e := range entries {
		out[i] = e.ID
	}
	return out
}
