package membership

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"
)

// aliasID returns a second peer ID for o's public key: the identity
// multihash of the key's protobuf written with its two fields swapped
// (Data before Type). libp2p's ExtractPublicKey decodes it to the same
// key, but it is other bytes than peer.IDFromPublicKey gives.
func aliasID(tb testing.TB, o operator) peer.ID {
	tb.Helper()
	pub := o.key.GetPublic()
	data, err := pub.Raw()
	if err != nil {
		tb.Fatal(err)
	}
	// field 2 (Data), bytes; then field 1 (Type), varint.
	var pbKey []byte
	pbKey = append(pbKey, 0x12, byte(len(data)))
	pbKey = append(pbKey, data...)
	pbKey = append(pbKey, 0x08, byte(pub.Type()))
	mh, err := multihash.Sum(pbKey, multihash.IDENTITY, -1)
	if err != nil {
		tb.Fatal(err)
	}
	id := peer.ID(mh)
	pk, err := id.ExtractPublicKey()
	if err != nil || !pk.Equals(pub) {
		tb.Fatalf("alias does not embed the operator's key: %v", err)
	}
	if id == o.id {
		tb.Fatal("alias equals the canonical ID")
	}
	return id
}

// One operator's key listed under two encodings of its peer ID is one
// member listed twice (docs/membership.md, Validity): a body holding both
// must be refused, or else the key's two signatures count as two of the M
// "distinct members" a change needs.
func TestMemberKeyAliasRefused(t *testing.T) {
	for _, ed := range []bool{false, true} {
		ops := newOperators(t, 3, ed)
		if ed {
			ops = ops[1:2] // the ed25519 one
			ops = append(ops, newOperators(t, 2, false)...)
		}
		a := ops[0]
		alias := aliasID(t, a)
		ms := append(members(ops), Member{ID: alias, Name: "operator-4"})
		// Threshold 2 of 4: two distinct members must sign the next version.
		cur, err := Genesis(ms, 2, now.AddDate(1, 0, 0))
		if err == nil {
			// The encoded form decodes as well: a node receives it too.
			_ = roundTrip(t, cur)
			next := propose(t, cur, func(b *Body) { b.Threshold = 1 }, a)
			sig, err := a.key.Sign(next.SignedBytes())
			if err != nil {
				t.Fatal(err)
			}
			if err := next.AddSignature(Signature{Signer: alias, Sig: sig}); err != nil {
				t.Fatal(err)
			}
			rep, err := VerifyNext(cur, roundTrip(t, next), now)
			t.Fatalf("key type %s: a body listing one key under two peer IDs was accepted; "+
				"VerifyNext with that one key's signatures: counted %d (%v), err %v",
				a.key.Type(), len(rep.Counted), rep.Counted, err)
		}
		wantErr(t, err, ErrInvalid)
		// A signature naming the alias of a member does not count either.
		cur = mustGenesis(t, ops, 1)
		next := propose(t, cur, nil)
		sig, _ := a.key.Sign(next.SignedBytes())
		_ = next.AddSignature(Signature{Signer: alias, Sig: sig})
		if _, err := VerifyNext(cur, next, now); err == nil {
			t.Fatal("a signature under an alias of a member's ID counted")
		}
	}
}
