package sealbox

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/libp2p/go-libp2p/core/crypto"
	"golang.org/x/crypto/chacha20poly1305"
)

// secp256k1Label follows the caller's info in the key derivation of a
// secp256k1 wrap, so that it never shares a key with the X25519 path.
const secp256k1Label = "\x00secp256k1"

// wrapSecp256k1 seals key to a secp256k1 public key: ephemeral-static
// ECDH, HKDF-SHA256, ChaCha20-Poly1305.
func wrapSecp256k1(info string, pk *crypto.Secp256k1PublicKey, key []byte) (enc, wrapped []byte, err error) {
	rcpt := (*secp256k1.PublicKey)(pk)
	eph, err := secp256k1.GeneratePrivateKey()
	if err != nil {
		return nil, nil, err
	}
	defer eph.Zero()
	enc = eph.PubKey().SerializeCompressed()
	kek, err := secp256k1KEK(info, secp256k1.GenerateSharedSecret(eph, rcpt), enc, rcpt.SerializeCompressed())
	if err != nil {
		return nil, nil, err
	}
	aead, err := chacha20poly1305.New(kek)
	if err != nil {
		return nil, nil, err
	}
	// A zero nonce: kek comes from a fresh ephemeral key and seals once.
	return enc, aead.Seal(nil, make([]byte, aead.NonceSize()), key, nil), nil
}

// secp256k1KEK derives the key that wraps the content key:
// HKDF-SHA256(ikm = the ECDH x coordinate, salt empty,
// info = info || "\x00secp256k1" || enc || recipient key), both points
// compressed (33 bytes).
func secp256k1KEK(info string, shared, enc, rcpt []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, shared, nil, info+secp256k1Label+string(enc)+string(rcpt), KeySize)
}

// secp256k1Unwrapper opens the wraps of a secp256k1 identity.
type secp256k1Unwrapper struct{ k *crypto.Secp256k1PrivateKey }

func (u secp256k1Unwrapper) unwrap(info string, w Wrap) ([]byte, error) {
	if len(w.Enc) != EncSizeSecp256k1 || len(w.Key) != WrappedKeySize {
		return nil, fmt.Errorf("%w: secp256k1 wrap of %d+%d bytes, want %d+%d", ErrOpen, len(w.Enc), len(w.Key), EncSizeSecp256k1, WrappedKeySize)
	}
	eph, err := secp256k1.ParsePubKey(w.Enc)
	if err != nil {
		return nil, fmt.Errorf("%w: ephemeral key: %w", ErrOpen, err)
	}
	priv := (*secp256k1.PrivateKey)(u.k)
	kek, err := secp256k1KEK(info, secp256k1.GenerateSharedSecret(priv, eph), w.Enc, priv.PubKey().SerializeCompressed())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOpen, err)
	}
	aead, err := chacha20poly1305.New(kek)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOpen, err)
	}
	key, err := aead.Open(nil, make([]byte, aead.NonceSize()), w.Key, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: secp256k1 wrap: %w", ErrOpen, err)
	}
	return key, nil
}
