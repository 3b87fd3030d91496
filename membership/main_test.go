package membership

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// now is the fixed verification time of the tests: expiry is decided by the
// time passed in, never by the clock.
var now = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

// operator is one member's identity.
type operator struct {
	key crypto.PrivKey
	id  peer.ID
}

// newOperators returns n operators, secp256k1 unless ed25519 is set for
// every other one.
func newOperators(tb testing.TB, n int, mixEd25519 bool) []operator {
	tb.Helper()
	out := make([]operator, n)
	for i := range out {
		var (
			k   crypto.PrivKey
			err error
		)
		if mixEd25519 && i%2 == 1 {
			k, _, err = crypto.GenerateEd25519Key(rand.Reader)
		} else {
			k, _, err = crypto.GenerateSecp256k1Key(rand.Reader)
		}
		if err != nil {
			tb.Fatal(err)
		}
		id, err := peer.IDFromPrivateKey(k)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = operator{key: k, id: id}
	}
	return out
}

func members(ops []operator) []Member {
	out := make([]Member, len(ops))
	for i, o := range ops {
		out[i] = Member{ID: o.id}
	}
	return out
}

func mustGenesis(tb testing.TB, ops []operator, m int) *Document {
	tb.Helper()
	d, err := Genesis(members(ops), m, time.Time{})
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// propose returns the version after cur with body edited by edit, signed
// by signers.
func propose(tb testing.TB, cur *Document, edit func(*Body), signers ...operator) *Document {
	tb.Helper()
	b := cur.Next()
	if edit != nil {
		edit(&b)
	}
	d, err := NewDocument(b)
	if err != nil {
		tb.Fatal(err)
	}
	for _, s := range signers {
		if err := d.Sign(s.key); err != nil {
			tb.Fatal(err)
		}
	}
	return d
}

// roundTrip encodes and decodes d, as a file or the network would.
func roundTrip(tb testing.TB, d *Document) *Document {
	tb.Helper()
	data, err := d.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := Decode(data)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func wantErr(tb testing.TB, err error, kinds ...error) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("no error, want %v", kinds)
	}
	for _, k := range kinds {
		if !errors.Is(err, k) {
			tb.Fatalf("error %q does not match %v", err, k)
		}
	}
}
