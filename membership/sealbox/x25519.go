package sealbox

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/sha512"
	"fmt"

	"filippo.io/edwards25519"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// The HPKE suite of ed25519 recipients: DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, ChaCha20-Poly1305 (RFC 9180 ids 0x0020, 0x0001, 0x0003).
func hpkeSuite() (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.ChaCha20Poly1305() }

// wrapX25519 seals key with HPKE to the X25519 form of an ed25519 key.
func wrapX25519(info string, pk *crypto.Ed25519PublicKey, key []byte) (enc, wrapped []byte, err error) {
	raw, err := pk.Raw()
	if err != nil {
		return nil, nil, err
	}
	p, err := new(edwards25519.Point).SetBytes(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("ed25519 key: %w", err)
	}
	xpub, err := ecdh.X25519().NewPublicKey(p.BytesMontgomery())
	if err != nil {
		return nil, nil, err
	}
	hpub, err := hpke.NewDHKEMPublicKey(xpub)
	if err != nil {
		return nil, nil, err
	}
	kdf, aead := hpkeSuite()
	// Seal fails, rather than encrypting to a known key, for a low-order
	// point: X25519 refuses an all-zero shared secret.
	ct, err := hpke.Seal(hpub, kdf, aead, []byte(info), key)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke: %w", err)
	}
	if len(ct) != EncSizeX25519+WrappedKeySize {
		return nil, nil, fmt.Errorf("hpke: %d bytes sealed, want %d", len(ct), EncSizeX25519+WrappedKeySize)
	}
	return ct[:EncSizeX25519:EncSizeX25519], ct[EncSizeX25519:], nil
}

// x25519Unwrapper opens the HPKE wraps of an ed25519 identity.
type x25519Unwrapper struct{ k hpke.PrivateKey }

// newX25519Unwrapper derives the X25519 private key of an ed25519 key: the
// clamped first half of SHA-512 of the seed (RFC 8032 §5.1.5), whose
// public point is the ed25519 public key, so its Montgomery form is what
// wrapX25519 sealed to.
func newX25519Unwrapper(k *crypto.Ed25519PrivateKey) (unwrapper, error) {
	raw, err := k.Raw()
	if err != nil || len(raw) < 32 {
		return nil, fmt.Errorf("%w: ed25519 private key", ErrUnsupportedKey)
	}
	h := sha512.Sum512(raw[:32])
	// X25519 clamps the scalar itself (RFC 7748 §5).
	priv, err := ecdh.X25519().NewPrivateKey(h[:32])
	if err != nil {
		return nil, fmt.Errorf("sealbox: x25519 key: %w", err)
	}
	hk, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("sealbox: hpke key: %w", err)
	}
	return x25519Unwrapper{hk}, nil
}

func (u x25519Unwrapper) unwrap(info string, w Wrap) ([]byte, error) {
	if len(w.Enc) != EncSizeX25519 || len(w.Key) != WrappedKeySize {
		return nil, fmt.Errorf("%w: X25519 wrap of %d+%d bytes, want %d+%d", ErrOpen, len(w.Enc), len(w.Key), EncSizeX25519, WrappedKeySize)
	}
	kdf, aead := hpkeSuite()
	ct := make([]byte, 0, EncSizeX25519+WrappedKeySize)
	ct = append(append(ct, w.Enc...), w.Key...)
	key, err := hpke.Open(u.k, kdf, aead, []byte(info), ct)
	if err != nil {
		return nil, fmt.Errorf("%w: hpke: %w", ErrOpen, err)
	}
	return key, nil
}
