package membership

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Rejection is a signature that does not count, and why.
type Rejection struct {
	// Copy is the index of the document it came from, for [Combine]; 0
	// in a [Report].
	Copy int
	// Index is the signature's position in its document.
	Index int
	// Signer is the peer the signature names.
	Signer peer.ID
	// Err matches [ErrNotMember], [ErrDuplicateSigner] or [ErrBadSignature].
	Err error
}

// Report is what a verification found. It is filled as far as the checks
// went, also when the document is refused.
type Report struct {
	// Version and Hash identify the verified document.
	Version uint64
	Hash    Hash
	// Threshold is how many signatures were needed: M of the previous
	// version; 0 for a genesis document.
	Threshold int
	// Counted lists the signers whose signatures count, sorted.
	Counted []peer.ID
	// Rejected lists the signatures that do not count, in document order.
	Rejected []Rejection
}

// VerifyGenesis checks d as a version 1 to install: version 1, no previous
// hash, not expired at now. Its signatures are not needed and not checked.
// The body rules themselves were checked when d was built or decoded.
func VerifyGenesis(d *Document, now time.Time) (Report, error) {
	r := Report{Version: d.body.Version, Hash: d.Hash()}
	if d.body.Version != 1 || !d.body.Prev.IsZero() {
		return r, fmt.Errorf("membership: %w", newError(fmt.Sprintf("version %d is not a genesis document (version 1)", d.body.Version), ErrNotGenesis))
	}
	if d.Expired(now) {
		return r, fmt.Errorf("membership: %w", newError(fmt.Sprintf("version 1 expired at %s", d.body.Expires.Format(time.RFC3339)), ErrExpired))
	}
	return r, nil
}

// VerifyNext checks that next may replace cur, the version a node holds
// and trusts. next must:
//
//   - be version cur+1 (an older or equal version is a replay or rollback:
//     [ErrStale], which also matches [ErrNotNext]; a newer one means
//     versions in between are missing: [ErrNotNext]);
//   - name cur's hash as its previous version ([ErrBadLink]);
//   - not be expired at now ([ErrExpired]). cur's own expiry does not
//     matter, so the members can always replace an expired version;
//   - carry valid signatures over its signed bytes by at least cur's
//     threshold of cur's members ([ErrThreshold]).
//
// A signature counts once per signer, and only if its signer is a member of
// cur and it verifies with that member's key. Only the first signature
// naming a signer is verified: a later one is a duplicate even when the
// first did not verify, so a document costs at most one verification per
// member of cur. The others are reported in
// [Report.Rejected] with [ErrNotMember], [ErrDuplicateSigner] or
// [ErrBadSignature]. Because signers are cur's members, a member that next
// removes still counts toward its own removal, and no later version.
//
// The checks run cheapest first, so a replayed or unrelated document costs
// no signature verification.
func VerifyNext(cur, next *Document, now time.Time) (Report, error) {
	r := Report{Version: next.body.Version, Hash: next.Hash(), Threshold: cur.body.Threshold}
	switch v, c := next.body.Version, cur.body.Version; {
	case v <= c:
		return r, fmt.Errorf("membership: %w", newError(fmt.Sprintf("version %d is not newer than the current version %d", v, c), ErrStale, ErrNotNext))
	case v != c+1:
		return r, fmt.Errorf("membership: %w", newError(fmt.Sprintf("version %d does not follow the current version %d (versions in between are missing)", v, c), ErrNotNext))
	}
	if want := cur.Hash(); next.body.Prev != want {
		return r, fmt.Errorf("membership: %w", newError(fmt.Sprintf("version %d links to %s, the current version %d is %s", next.body.Version, next.body.Prev, cur.body.Version, want), ErrBadLink))
	}
	if next.Expired(now) {
		return r, fmt.Errorf("membership: %w", newError(fmt.Sprintf("version %d expired at %s", next.body.Version, next.body.Expires.Format(time.RFC3339)), ErrExpired))
	}
	msg := next.SignedBytes()
	// Only a signer's first signature is verified, whether it counts or
	// not: else a document of a thousand bad signatures in one member's
	// name would cost a thousand verifications, where the members bound
	// the work.
	checked := make(map[peer.ID]bool, len(next.sigs))
	for i, s := range next.sigs {
		rej := func(err error) { r.Rejected = append(r.Rejected, Rejection{Index: i, Signer: s.Signer, Err: err}) }
		if _, ok := cur.body.Member(s.Signer); !ok {
			rej(newError(fmt.Sprintf("signature %d: %s is not a member of version %d", i, s.Signer, cur.body.Version), ErrNotMember))
			continue
		}
		if checked[s.Signer] {
			rej(newError(fmt.Sprintf("signature %d: %s already signed", i, s.Signer), ErrDuplicateSigner))
			continue
		}
		checked[s.Signer] = true
		// The key comes from the member's ID in cur, which equals the
		// signer: it was checked when cur was built or decoded.
		pk, err := memberKey(s.Signer)
		if err == nil {
			var ok bool
			if ok, err = pk.Verify(msg, s.Sig); err == nil && !ok {
				err = errors.New("wrong signature")
			}
		}
		if err != nil {
			rej(newError(fmt.Sprintf("signature %d: by %s does not verify: %v", i, s.Signer, err), ErrBadSignature))
			continue
		}
		r.Counted = append(r.Counted, s.Signer)
	}
	slices.SortFunc(r.Counted, func(a, b peer.ID) int { return strings.Compare(string(a), string(b)) })
	if len(r.Counted) < cur.body.Threshold {
		sigs := "signatures"
		if len(r.Counted) == 1 {
			sigs = "signature"
		}
		return r, fmt.Errorf("membership: %w", newError(fmt.Sprintf("version %d has %d valid %s by members of version %d, needs %d",
			next.body.Version, len(r.Counted), sigs, cur.body.Version, cur.body.Threshold), ErrThreshold))
	}
	return r, nil
}
