package membership

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// FuzzDecode feeds arbitrary bytes to Decode. It must not panic; whatever
// decodes must encode back to a document with the same body bytes and
// signatures, and verifying it against a fixed version 1 must not panic.
func FuzzDecode(f *testing.F) {
	k, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	ek, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	eid, _ := peer.IDFromPrivateKey(ek)
	g, err := Genesis([]Member{{ID: id, Name: "a"}, {ID: eid, Role: "r"}}, 1, time.Time{})
	if err != nil {
		f.Fatal(err)
	}
	next := g.Next()
	next.Members[0].Addrs = nil
	v2, err := NewDocument(next)
	if err != nil {
		f.Fatal(err)
	}
	_ = v2.Sign(k)
	_ = v2.Sign(ek)
	for _, d := range []*Document{g, v2} {
		data, err := d.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Decode(data)
		if err != nil {
			return
		}
		out, err := d.Encode()
		if err != nil {
			t.Fatalf("a decoded document does not encode: %v", err)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("re-encoded document refused: %v", err)
		}
		if !bytes.Equal(again.raw, d.raw) || again.Hash() != d.Hash() || len(again.sigs) != len(d.sigs) {
			t.Fatal("round trip changed the document")
		}
		_, _ = VerifyNext(g, d, time.Unix(0, 0))
		_, _ = VerifyGenesis(d, time.Unix(0, 0))
		_ = d.Entries()
	})
}
