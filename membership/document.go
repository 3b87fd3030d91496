package membership

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/membership/pb"
)

// SignPrefix precedes the body in the bytes members sign. It separates
// these signatures from anything else the same identity keys sign (the
// libp2p handshake, DHT records): a signature made for one purpose can
// never be replayed as a vote on the membership.
const SignPrefix = "bitvmx-membership-v1\x00"

// Signature is one member's signature over a document's signed bytes.
type Signature struct {
	// Signer is who claims to have signed; its ID embeds the key that
	// checks Sig.
	Signer peer.ID
	// Sig is the signature made with Signer's identity key.
	Sig []byte
}

// Document is one version of the membership: a canonical body and the
// signatures collected for it. It is safe for concurrent reads; Sign and
// AddSignature must not run concurrently with other calls.
type Document struct {
	body Body   // canonical; never handed out without a copy
	raw  []byte // encodeBody(body): what is signed after SignPrefix
	sigs []Signature
}

// NewDocument returns an unsigned document holding b in canonical form.
// It fails with [ErrInvalid] for a body that breaks a rule of its own:
// version 0, a missing or unexpected previous hash, no members or more than
// [MaxMembers], a threshold outside 1..members, a repeated member, an
// identity without an embedded secp256k1 or ed25519 key, an invalid prefix,
// a name or role too long or holding control characters.
func NewDocument(b Body) (*Document, error) {
	c, err := b.canonical()
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	raw, err := encodeBody(c)
	if err != nil {
		return nil, fmt.Errorf("membership: encode: %w", err)
	}
	if len(raw)+len(SignPrefix) > MaxDocumentSize {
		return nil, fmt.Errorf("membership: %w", newError(fmt.Sprintf("body of %d bytes, at most %d", len(raw), MaxDocumentSize), ErrInvalid))
	}
	return &Document{body: c, raw: raw}, nil
}

// Genesis returns an unsigned version 1 holding members, with threshold M
// and an optional expiry (zero: none). Version 1 needs no signatures: a
// node trusts it because its operator installs it.
func Genesis(members []Member, threshold int, expires time.Time) (*Document, error) {
	return NewDocument(Body{Version: 1, Threshold: threshold, Expires: expires, Members: members})
}

// Next returns the body of the version after d, a starting point for a
// proposal: the same members, threshold and expiry, Version+1 and Prev set
// to d's hash.
func (d *Document) Next() Body {
	b := d.body.clone()
	b.Version++
	b.Prev = d.Hash()
	return b
}

// Body returns a copy of the document's body, members sorted by peer ID.
func (d *Document) Body() Body { return d.body.clone() }

// Version returns the document's version number.
func (d *Document) Version() uint64 { return d.body.Version }

// SignedBytes returns exactly what members sign: [SignPrefix] followed by
// the canonical encoding of the body.
func (d *Document) SignedBytes() []byte {
	return append([]byte(SignPrefix), d.raw...)
}

// Hash returns sha256 of [Document.SignedBytes]. Signatures do not change
// it: every signed copy of one proposal has the same hash.
func (d *Document) Hash() Hash {
	h := sha256.New()
	h.Write([]byte(SignPrefix))
	h.Write(d.raw)
	var out Hash
	h.Sum(out[:0])
	return out
}

// Expired reports whether the document's expiry has passed at now.
func (d *Document) Expired(now time.Time) bool {
	return !d.body.Expires.IsZero() && !now.Before(d.body.Expires)
}

// Signatures returns a copy of the signatures, in the order they were added.
func (d *Document) Signatures() []Signature {
	out := make([]Signature, len(d.sigs))
	for i, s := range d.sigs {
		out[i] = Signature{Signer: s.Signer, Sig: slices.Clone(s.Sig)}
	}
	return out
}

// SignedBy reports whether the document carries a signature naming id,
// valid or not.
func (d *Document) SignedBy(id peer.ID) bool {
	return slices.ContainsFunc(d.sigs, func(s Signature) bool { return s.Signer == id })
}

// Sign adds the signature of key over the signed bytes. It refuses, with
// [ErrDuplicateSigner], a key that already signed. It does not check that
// the signer is a member of the previous version: only a verifier holding
// that version can, and a signature by a non-member simply does not count.
func (d *Document) Sign(key crypto.PrivKey) error {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return fmt.Errorf("membership: sign: %w", err)
	}
	if _, err := memberKey(id); err != nil {
		return fmt.Errorf("membership: sign: %w", err)
	}
	if d.SignedBy(id) {
		return fmt.Errorf("membership: sign: %w", newError(fmt.Sprintf("%s already signed version %d", id, d.body.Version), ErrDuplicateSigner))
	}
	sig, err := key.Sign(d.SignedBytes())
	if err != nil {
		return fmt.Errorf("membership: sign: %w", err)
	}
	return d.AddSignature(Signature{Signer: id, Sig: sig})
}

// AddSignature appends s as it is, without checking it: verification
// decides what counts. It fails only when the document already holds
// [MaxMembers] signatures or s is oversized, so that the document stays
// encodable.
func (d *Document) AddSignature(s Signature) error {
	if len(d.sigs) >= MaxMembers {
		return fmt.Errorf("membership: %w", newError(fmt.Sprintf("already %d signatures, at most %d", len(d.sigs), MaxMembers), ErrInvalid))
	}
	if len(s.Signer) > maxIDLen || len(s.Sig) > maxSigLen {
		return fmt.Errorf("membership: %w", newError("oversized signature", ErrInvalid))
	}
	d.sigs = append(d.sigs, Signature{Signer: s.Signer, Sig: slices.Clone(s.Sig)})
	return nil
}

// checkOwn reports whether s is a valid signature by its named signer over
// d, whoever the signer is. It needs no previous version: the key is in the
// signer's ID.
func (d *Document) checkOwn(s Signature) error {
	pk, err := memberKey(s.Signer)
	if err != nil {
		return newError(fmt.Sprintf("signer: %v", err), ErrBadSignature)
	}
	ok, err := pk.Verify(d.SignedBytes(), s.Sig)
	if err != nil || !ok {
		return newError(fmt.Sprintf("signature by %s does not verify", s.Signer), ErrBadSignature)
	}
	return nil
}

// Combine merges the signatures of copies of one proposal. Every copy must
// hold the same signed bytes (else [ErrDifferentBody], naming the first copy
// that differs, by index). The result keeps, per signer, the first signature
// that verifies against the signer's own key; the signatures that do not
// verify are returned as rejections and left out, so that a corrupt copy
// cannot push out a good signature. Whether a signer is a member is not
// checked here: [VerifyNext] does that.
func Combine(docs ...*Document) (*Document, []Rejection, error) {
	if len(docs) == 0 {
		return nil, nil, fmt.Errorf("membership: combine: no documents")
	}
	out := &Document{body: docs[0].body.clone(), raw: slices.Clone(docs[0].raw)}
	var rejected []Rejection
	for i, d := range docs {
		if !bytes.Equal(d.raw, out.raw) {
			return nil, nil, fmt.Errorf("membership: combine: %w", newError(fmt.Sprintf(
				"copy %d holds version %d with hash %s, copy 0 version %d with hash %s",
				i, d.body.Version, d.Hash(), out.body.Version, out.Hash()), ErrDifferentBody))
		}
		for j, s := range d.sigs {
			if out.SignedBy(s.Signer) {
				continue // the same operator's signature, in several copies
			}
			if err := out.checkOwn(s); err != nil {
				rejected = append(rejected, Rejection{Copy: i, Index: j, Signer: s.Signer, Err: err})
				continue
			}
			if err := out.AddSignature(s); err != nil {
				return nil, nil, err
			}
		}
	}
	return out, rejected, nil
}

// Encode returns the document's binary form, as [Decode] reads it and as
// files hold it.
func (d *Document) Encode() ([]byte, error) {
	m := &pb.Document{Body: d.raw}
	for _, s := range d.sigs {
		m.Signatures = append(m.Signatures, &pb.Signature{Signer: []byte(s.Signer), Sig: s.Sig})
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("membership: encode: %w", err)
	}
	if len(data) > MaxDocumentSize {
		return nil, fmt.Errorf("membership: %w", newError(fmt.Sprintf("document of %d bytes, at most %d", len(data), MaxDocumentSize), ErrInvalid))
	}
	return data, nil
}

// Decode parses a document. It refuses, with [ErrMalformed], more than
// [MaxDocumentSize] bytes, more than [MaxMembers] members or signatures,
// oversized fields, and a body that is not in canonical form (decoding it
// and encoding it again must give the same bytes); with [ErrInvalid], a
// body that breaks a rule of its own, as [NewDocument] does. Signatures are
// kept as they are, even invalid or repeated ones: verification reports
// them. Decode never panics, whatever data holds.
func Decode(data []byte) (*Document, error) {
	if len(data) > MaxDocumentSize {
		return nil, fmt.Errorf("membership: %w", newError(fmt.Sprintf("document of %d bytes, at most %d", len(data), MaxDocumentSize), ErrMalformed))
	}
	var m pb.Document
	if err := proto.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("membership: %w", newError("not a membership document: "+err.Error(), ErrMalformed))
	}
	if len(m.Signatures) > MaxMembers {
		return nil, fmt.Errorf("membership: %w", newError(fmt.Sprintf("%d signatures, at most %d", len(m.Signatures), MaxMembers), ErrMalformed))
	}
	body, err := decodeBody(m.Body)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	d := &Document{body: body, raw: slices.Clone(m.Body)}
	for i, s := range m.Signatures {
		if len(s.Signer) > maxIDLen || len(s.Sig) > maxSigLen {
			return nil, fmt.Errorf("membership: %w", newError(fmt.Sprintf("signature %d is oversized", i), ErrMalformed))
		}
		d.sigs = append(d.sigs, Signature{Signer: peer.ID(s.Signer), Sig: slices.Clone(s.Sig)})
	}
	return d, nil
}

// String describes the document in one line, for logs.
func (d *Document) String() string {
	return fmt.Sprintf("membership v%d %s (%d members, threshold %d, %d signatures)",
		d.body.Version, d.Hash().String()[:16], len(d.body.Members), d.body.Threshold, len(d.sigs))
}
