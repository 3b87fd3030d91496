// Package sealbox encrypts a payload so that only the holders of a set of
// libp2p identity keys can read it: the payload is encrypted once under a
// fresh random content key, and that key is wrapped for each recipient's
// public key. The DHT uses it to make node records readable by the current
// members only (docs/dht.md, "Sealed records").
//
// # Construction
//
// The content key is 32 random bytes; the payload is encrypted with
// ChaCha20-Poly1305 under it with an all-zero nonce, which is safe because
// a content key encrypts exactly one payload. Each recipient gets a [Wrap]:
//
//   - an ed25519 recipient: RFC 9180 HPKE (crypto/hpke), base mode, suite
//     DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, to the
//     X25519 form of its ed25519 key (the birational map of RFC 7748, as
//     age and libsodium use; filippo.io/edwards25519 computes it). The
//     holder's X25519 private key is the clamped first half of
//     SHA-512(seed), the scalar its ed25519 signatures already use.
//   - a secp256k1 recipient: ECIES over secp256k1, because no HPKE KEM for
//     secp256k1 is standardised or in a well-kept Go library (crypto/hpke
//     only takes the NIST curves and X25519): a fresh ephemeral key, ECDH
//     with decred's secp256k1 (the x coordinate, RFC 5903), HKDF-SHA256
//     binding the info string, the ephemeral and the recipient key, and
//     ChaCha20-Poly1305 with a zero nonce (the derived key is used once).
//
// A [Wrap] carries an 8-byte hint, the start of SHA-256 of the recipient's
// binary peer ID, so that a reader tries only its own wraps.
//
// The box is not signed: it says nothing about who made it. Callers sign
// it (the DHT signs the whole record with the publisher's key).
package sealbox
