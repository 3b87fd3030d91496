package allowlist

import (
	"errors"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// badKeyID returns id's text with one character changed so that it still
// decodes as a peer ID but the secp256k1 key inside is not a point on the
// curve: the typo the allowlist must catch. (A changed character gives a
// valid point about half the time: no checksum can catch those.)
func badKeyID(t *testing.T, id peer.ID) string {
	t.Helper()
	s := id.String()
	const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	for i := len(s) - 10; i > 10; i-- {
		for _, c := range alphabet {
			m := s[:i] + string(c) + s[i+1:]
			d, err := peer.Decode(m)
			if m == s || err != nil {
				continue
			}
			if _, err := d.ExtractPublicKey(); err != nil && !errors.Is(err, peer.ErrNoPublicKey) {
				return m
			}
		}
	}
	t.Fatal("no one-character change of the ID gives an invalid key")
	return ""
}

// An ID whose key does not decode, or that holds no key at all, is refused
// by Parse (naming its line), New and Add.
func TestIDMustHoldAValidKey(t *testing.T) {
	good := newID(t)
	bad := badKeyID(t, good)
	// A sha2-256 multihash (code 0x12, 32 bytes), as RSA keys' IDs are:
	// no key inside.
	noKey := peer.ID(append([]byte{0x12, 0x20}, make([]byte, 32)...))

	for _, tc := range []struct{ id, want string }{
		{bad, "the public key inside does not decode"},
		{noKey.String(), "holds no public key"},
	} {
		doc := "peers:\n  - id: " + good.String() + "\n  - id: " + tc.id + "\n"
		_, err := Parse([]byte(doc))
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Line != 3 || !errors.Is(err, ErrInvalidID) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse with %s: %v", tc.id, err)
		}
	}
	d, err := peer.Decode(bad)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []peer.ID{d, noKey} {
		if _, err := New(Entry{ID: id}); !errors.Is(err, ErrInvalidID) {
			t.Errorf("New(%s): %v", id, err)
		}
		var l List
		if err := l.Add(Entry{ID: id}); !errors.Is(err, ErrInvalidID) || l.Len() != 0 {
			t.Errorf("Add(%s): %v", id, err)
		}
	}
}
