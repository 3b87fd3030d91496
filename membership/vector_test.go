package membership

import (
	"crypto/ed25519"
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The signed bytes of a fixed document, as docs/membership.md shows them.
// A change here changes every hash and invalidates every signature in the
// field: it must never happen by accident (a protobuf upgrade, a field
// added with a default written out).
func TestSignedBytesVector(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = 1
	}
	k, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	g, err := Genesis([]Member{{ID: id, Name: "op", Role: "r", Addrs: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/8")}}},
		1, time.Unix(1800000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	const (
		wantID = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
		// SignPrefix, then Body: version 1, threshold 1, expires
		// 1800000000, one member (id, name "op", addrs ["10.0.0.0/8"],
		// role "r").
		wantSigned = "626974766d782d6d656d626572736869702d763100" +
			"0801" + "1001" + "2080a4a7da06" +
			"2a3b" + "0a26002408011220" + "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c" +
			"12026f70" + "1a0a31302e302e302e302f38" + "220172"
		wantHash = "f9e81dd373d0b1c21d744a6f37f5f668b6f520f6b64d71ca6c41f2579462f761"
		// Version 2 (the same members, prev = wantHash), signed by the
		// member: ed25519 signatures are deterministic.
		wantV2 = "0a69" + "0802" + "1001" + "1a20" + wantHash + "2080a4a7da06" +
			"2a3b0a260024080112208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c12026f701a0a31302e302e302e302f38220172" +
			"126a" + "0a26002408011220" + "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c" +
			"1240" + "2be5c3b16961b13b201e753dde9561eb2831d6d387a7f8798428aa6cad4c032ce251a4f853085f5c569895c94b1a9f17b36fe0ea7948bf34453d369f22531c03"
	)
	if id.String() != wantID {
		t.Fatalf("id %s", id)
	}
	if got := hex.EncodeToString(g.SignedBytes()); got != wantSigned {
		t.Fatalf("signed bytes\n got %s\nwant %s", got, wantSigned)
	}
	if g.Hash().String() != wantHash {
		t.Fatalf("hash %s", g.Hash())
	}
	v2, err := NewDocument(g.Next())
	if err != nil {
		t.Fatal(err)
	}
	if err := v2.Sign(k); err != nil {
		t.Fatal(err)
	}
	data, err := v2.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(data); got != wantV2 {
		t.Fatalf("version 2\n got %s\nwant %s", got, wantV2)
	}
	raw, _ := hex.DecodeString(wantV2)
	d, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyNext(g, d, now); err != nil {
		t.Fatal(err)
	}
}
