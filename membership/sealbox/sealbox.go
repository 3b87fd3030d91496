package sealbox

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/crypto/chacha20poly1305"
)

// Sizes of the box's parts.
const (
	// KeySize is the size of a content key.
	KeySize = chacha20poly1305.KeySize
	// HintSize is the size of a recipient hint.
	HintSize = 8
	// WrappedKeySize is the size of a wrapped content key: the key and
	// its Poly1305 tag.
	WrappedKeySize = KeySize + chacha20poly1305.Overhead
	// EncSizeX25519 is the encapsulated key of an ed25519 recipient.
	EncSizeX25519 = 32
	// EncSizeSecp256k1 is the encapsulated key of a secp256k1 recipient,
	// a compressed point.
	EncSizeSecp256k1 = 33
)

// maxHintTries bounds the wraps Open tries: honest boxes hold one per
// recipient, and two recipients share a hint with a chance of 2^-64 per
// pair, so more than a few with one's own hint is a box made to waste the
// reader's CPU on key agreements.
const maxHintTries = 4

// Errors callers branch on; returned errors wrap them with detail.
var (
	// ErrNotRecipient: the box holds no wrap for the key trying to open it.
	ErrNotRecipient = errors.New("sealbox: not a recipient")
	// ErrUnsupportedKey: the key is neither secp256k1 nor ed25519.
	ErrUnsupportedKey = errors.New("sealbox: unsupported key type")
	// ErrOpen: a wrap or the ciphertext does not decrypt, or is malformed.
	ErrOpen = errors.New("sealbox: cannot decrypt")
)

// Wrap is the content key sealed to one recipient.
type Wrap struct {
	// Hint is the first HintSize bytes of SHA-256 of the recipient's
	// binary peer ID.
	Hint []byte
	// Enc is the encapsulated (ephemeral public) key.
	Enc []byte
	// Key is the wrapped content key.
	Key []byte
}

// Box is a sealed payload.
type Box struct {
	// Wraps hold the content key, once per recipient.
	Wraps []Wrap
	// Ciphertext is the payload encrypted under the content key.
	Ciphertext []byte
}

// Skipped is a recipient Seal could not seal to, and why.
type Skipped struct {
	// ID is the recipient left out.
	ID peer.ID
	// Err matches ErrUnsupportedKey, or says why key agreement failed.
	Err error
}

// Hint returns the recipient hint of id.
func Hint(id peer.ID) []byte {
	h := sha256.Sum256([]byte(id))
	return h[:HintSize]
}

// Seal encrypts plaintext for recipients. info separates the uses of the
// construction (a box sealed with one info does not open with another).
// A recipient whose ID does not embed a secp256k1 or ed25519 public key, or
// whose key cannot be used for key agreement, is left out and listed in
// skipped, so that one bad key does not make the payload unreadable for
// everyone; err is set only when nothing could be sealed at all. Repeated
// recipients get one wrap.
func Seal(info string, recipients []peer.ID, plaintext []byte) (box Box, skipped []Skipped, err error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return Box{}, nil, fmt.Errorf("sealbox: content key: %w", err)
	}
	seen := make(map[peer.ID]bool, len(recipients))
	for _, id := range recipients {
		if seen[id] {
			continue
		}
		seen[id] = true
		w, err := wrap(info, id, key)
		if err != nil {
			skipped = append(skipped, Skipped{ID: id, Err: err})
			continue
		}
		box.Wraps = append(box.Wraps, w)
	}
	if len(box.Wraps) == 0 {
		return Box{}, skipped, fmt.Errorf("sealbox: no recipient to seal to (%d skipped)", len(skipped))
	}
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return Box{}, nil, fmt.Errorf("sealbox: %w", err)
	}
	box.Ciphertext = aead.Seal(nil, make([]byte, aead.NonceSize()), plaintext, nil)
	return box, skipped, nil
}

// Open decrypts box with self, the private key of one of its recipients.
// It fails with ErrNotRecipient when no wrap is for self, ErrOpen when a
// wrap for self or the ciphertext does not decrypt, ErrUnsupportedKey for a
// key that is neither secp256k1 nor ed25519. It never panics on malformed
// input.
func Open(info string, self crypto.PrivKey, box Box) ([]byte, error) {
	id, err := peer.IDFromPrivateKey(self)
	if err != nil {
		return nil, fmt.Errorf("sealbox: %w", err)
	}
	u, err := newUnwrapper(self)
	if err != nil {
		return nil, err
	}
	hint := Hint(id)
	tried := 0
	var lastErr error
	for _, w := range box.Wraps {
		if string(w.Hint) != string(hint) {
			continue
		}
		if tried == maxHintTries {
			break
		}
		tried++
		key, err := u.unwrap(info, w)
		if err != nil {
			// Another member's wrap can share the hint, very rarely.
			lastErr = err
			continue
		}
		aead, err := chacha20poly1305.New(key)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrOpen, err)
		}
		pt, err := aead.Open(nil, make([]byte, aead.NonceSize()), box.Ciphertext, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: ciphertext: %w", ErrOpen, err)
		}
		return pt, nil
	}
	if tried == 0 {
		return nil, fmt.Errorf("%w: none of the %d wraps is for %s", ErrNotRecipient, len(box.Wraps), id)
	}
	return nil, fmt.Errorf("%w: the wrap for %s: %w", ErrOpen, id, lastErr)
}

// wrap seals key to id's public key.
func wrap(info string, id peer.ID, key []byte) (Wrap, error) {
	pk, err := id.ExtractPublicKey()
	if err != nil {
		return Wrap{}, fmt.Errorf("%w: %s does not embed its public key: %w", ErrUnsupportedKey, id, err)
	}
	var enc, wrapped []byte
	switch k := pk.(type) {
	case *crypto.Ed25519PublicKey:
		enc, wrapped, err = wrapX25519(info, k, key)
	case *crypto.Secp256k1PublicKey:
		enc, wrapped, err = wrapSecp256k1(info, k, key)
	default:
		return Wrap{}, fmt.Errorf("%w: %s key of %s", ErrUnsupportedKey, pk.Type(), id)
	}
	if err != nil {
		return Wrap{}, fmt.Errorf("sealbox: wrap for %s: %w", id, err)
	}
	return Wrap{Hint: Hint(id), Enc: enc, Key: wrapped}, nil
}

// unwrapper opens the wraps of one private key.
type unwrapper interface {
	unwrap(info string, w Wrap) ([]byte, error)
}

func newUnwrapper(self crypto.PrivKey) (unwrapper, error) {
	switch k := self.(type) {
	case *crypto.Ed25519PrivateKey:
		return newX25519Unwrapper(k)
	case *crypto.Secp256k1PrivateKey:
		return secp256k1Unwrapper{k}, nil
	default:
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedKey, self.Type())
	}
}
