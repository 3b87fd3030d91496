package membership

import (
	"errors"
)

// Sentinel errors, matched with [errors.Is]. Returned errors carry the detail
// (which version, which signer, how many signatures) in their text.
var (
	// ErrMalformed reports a document that does not decode, is too large, or
	// is not in canonical form.
	ErrMalformed = errors.New("malformed membership document")
	// ErrInvalid reports a body that breaks a rule of its own: no members,
	// a threshold outside 1..members, a duplicate member, a bad prefix, a
	// peer ID without an embedded public key.
	ErrInvalid = errors.New("invalid membership document")
	// ErrNotNext reports a version that is not the current one plus 1. An
	// older or equal version (a replay or a rollback) also matches
	// [ErrStale]; a newer one means intermediate versions are missing.
	ErrNotNext = errors.New("not the next version")
	// ErrStale reports a version at or below the current one: a replay of
	// an old document or an attempt to roll back.
	ErrStale = errors.New("version is not newer than the current one")
	// ErrBadLink reports a document whose previous-version hash is not the
	// hash of the current document.
	ErrBadLink = errors.New("previous-version hash does not match")
	// ErrThreshold reports fewer valid signatures by members of the previous
	// version than its threshold.
	ErrThreshold = errors.New("not enough valid signatures")
	// ErrExpired reports a document whose expiry has passed.
	ErrExpired = errors.New("membership document expired")
	// ErrNotGenesis reports a document installed as genesis that is not
	// version 1 or names a previous version.
	ErrNotGenesis = errors.New("not a genesis document")
	// ErrDifferentBody reports copies of a proposal that do not hold the
	// same signed bytes, so their signatures cannot be combined.
	ErrDifferentBody = errors.New("documents have different bodies")

	// ErrNotMember says a signature does not count because its signer is
	// not a member of the previous version.
	ErrNotMember = errors.New("signer is not a member of the previous version")
	// ErrDuplicateSigner says a signature does not count because an
	// earlier signature names the same signer: only the first one is
	// verified, whether it counted or not.
	ErrDuplicateSigner = errors.New("signer already signed")
	// ErrBadSignature says a signature does not verify with its signer's key
	// over the document's signed bytes.
	ErrBadSignature = errors.New("signature does not verify")
)

// detailError gives a precise message while matching one or more sentinels,
// so callers branch with errors.Is and people read the detail.
type detailError struct {
	kinds []error
	msg   string
}

func (e *detailError) Error() string   { return e.msg }
func (e *detailError) Unwrap() []error { return e.kinds }

func newError(msg string, kinds ...error) error {
	return &detailError{kinds: kinds, msg: msg}
}
