package sealbox

import (
	"bytes"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

const testInfo = "sealbox test"

type ident struct {
	key crypto.PrivKey
	id  peer.ID
}

func newIdent(t testing.TB, typ int) ident {
	t.Helper()
	k, _, err := crypto.GenerateKeyPair(typ, 2048)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return ident{k, id}
}

// Both key types read what is sealed to them; a key left out reads nothing.
func TestSealOpenBothKeyTypes(t *testing.T) {
	secp, ed := newIdent(t, crypto.Secp256k1), newIdent(t, crypto.Ed25519)
	outsiders := []ident{newIdent(t, crypto.Secp256k1), newIdent(t, crypto.Ed25519)}
	msg := []byte("addresses of the publisher")
	box, skipped, err := Seal(testInfo, []peer.ID{secp.id, ed.id, secp.id}, msg)
	if err != nil || len(skipped) != 0 {
		t.Fatalf("seal: %v, skipped %v", err, skipped)
	}
	if len(box.Wraps) != 2 {
		t.Fatalf("%d wraps for two distinct recipients", len(box.Wraps))
	}
	for _, w := range box.Wraps {
		if len(w.Key) != WrappedKeySize || (len(w.Enc) != EncSizeX25519 && len(w.Enc) != EncSizeSecp256k1) {
			t.Fatalf("wrap sizes %d+%d", len(w.Enc), len(w.Key))
		}
	}
	for _, r := range []ident{secp, ed} {
		got, err := Open(testInfo, r.key, box)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%s (%s): %q, %v", r.id, r.key.Type(), got, err)
		}
		if _, err := Open("another use", r.key, box); !errors.Is(err, ErrOpen) {
			t.Fatalf("opened with another info: %v", err)
		}
	}
	for _, o := range outsiders {
		if _, err := Open(testInfo, o.key, box); !errors.Is(err, ErrNotRecipient) {
			t.Fatalf("outsider %s: %v", o.key.Type(), err)
		}
	}
}

// Any change to a wrap or to the ciphertext is detected, never decrypted.
func TestOpenTampered(t *testing.T) {
	for _, typ := range []int{crypto.Secp256k1, crypto.Ed25519} {
		r := newIdent(t, typ)
		box, _, err := Seal(testInfo, []peer.ID{r.id}, []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		mutations := []func(b *Box){
			func(b *Box) { b.Ciphertext[0] ^= 1 },
			func(b *Box) { b.Wraps[0].Key[3] ^= 1 },
			func(b *Box) { b.Wraps[0].Enc[5] ^= 1 },
			func(b *Box) { b.Wraps[0].Enc = b.Wraps[0].Enc[:10] },
			func(b *Box) { b.Wraps[0].Key = nil },
			func(b *Box) { b.Ciphertext = nil },
		}
		for i, mut := range mutations {
			c := clone(box)
			mut(&c)
			if _, err := Open(testInfo, r.key, c); !errors.Is(err, ErrOpen) {
				t.Fatalf("%s mutation %d: %v", r.key.Type(), i, err)
			}
		}
	}
}

// A recipient whose key cannot take part is skipped, not fatal; only
// nobody at all is an error.
func TestSealSkipsUnsupported(t *testing.T) {
	good := newIdent(t, crypto.Secp256k1)
	rsa := newIdent(t, crypto.RSA) // an RSA peer ID does not embed its key
	ecdsa := newIdent(t, crypto.ECDSA)
	box, skipped, err := Seal(testInfo, []peer.ID{rsa.id, good.id, ecdsa.id}, []byte("x"))
	if err != nil || len(box.Wraps) != 1 || len(skipped) != 2 {
		t.Fatalf("err %v, %d wraps, skipped %v", err, len(box.Wraps), skipped)
	}
	for _, s := range skipped {
		if !errors.Is(s.Err, ErrUnsupportedKey) {
			t.Fatalf("skipped %s: %v", s.ID, s.Err)
		}
	}
	if _, _, err := Seal(testInfo, []peer.ID{rsa.id}, []byte("x")); err == nil {
		t.Fatal("sealed to nobody")
	}
	if _, err := Open(testInfo, ecdsa.key, box); !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("open with ecdsa: %v", err)
	}
}

func clone(b Box) Box {
	c := Box{Ciphertext: bytes.Clone(b.Ciphertext)}
	for _, w := range b.Wraps {
		c.Wraps = append(c.Wraps, Wrap{Hint: bytes.Clone(w.Hint), Enc: bytes.Clone(w.Enc), Key: bytes.Clone(w.Key)})
	}
	return c
}

// A box stuffed with wraps carrying one recipient's hint costs that
// recipient a bounded number of key agreements, then fails.
func TestOpenBoundsHintTries(t *testing.T) {
	r := newIdent(t, crypto.Secp256k1)
	box, _, err := Seal(testInfo, []peer.ID{r.id}, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	bogus := Wrap{Hint: Hint(r.id), Enc: box.Wraps[0].Enc, Key: make([]byte, WrappedKeySize)}
	stuffed := Box{Ciphertext: box.Ciphertext}
	for range maxHintTries {
		stuffed.Wraps = append(stuffed.Wraps, bogus)
	}
	stuffed.Wraps = append(stuffed.Wraps, box.Wraps[0])
	if _, err := Open(testInfo, r.key, stuffed); !errors.Is(err, ErrOpen) {
		t.Fatalf("open past the bound: %v", err)
	}
	// Within the bound, the genuine wrap is still found.
	stuffed.Wraps = append(stuffed.Wraps[:1], box.Wraps[0])
	if got, err := Open(testInfo, r.key, stuffed); err != nil || string(got) != "x" {
		t.Fatalf("open after one bogus wrap: %q, %v", got, err)
	}
}

// An ed25519 key of small order would give every sender the same shared
// secret: it is left out, not sealed to.
func TestSealSkipsSmallOrderEd25519(t *testing.T) {
	identity := make([]byte, 32)
	identity[0] = 1 // the neutral point
	pk, err := crypto.UnmarshalEd25519PublicKey(identity)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := peer.IDFromPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	good := newIdent(t, crypto.Ed25519)
	box, skipped, err := Seal(testInfo, []peer.ID{weak, good.id}, []byte("x"))
	if err != nil || len(box.Wraps) != 1 || len(skipped) != 1 || skipped[0].ID != weak {
		t.Fatalf("err %v, %d wraps, skipped %v", err, len(box.Wraps), skipped)
	}
}
