package membership

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A change signed by M-1 members of the previous version is refused; by M,
// accepted, through an encode/decode round trip.
func TestThreshold(t *testing.T) {
	ops := newOperators(t, 5, true)
	g := mustGenesis(t, ops, 3)
	add := newOperators(t, 1, false)[0]
	edit := func(b *Body) { b.Members = append(b.Members, Member{ID: add.id, Name: "new"}) }

	two := roundTrip(t, propose(t, g, edit, ops[0], ops[1]))
	r, err := VerifyNext(g, two, now)
	wantErr(t, err, ErrThreshold)
	if len(r.Counted) != 2 || r.Threshold != 3 || len(r.Rejected) != 0 {
		t.Fatalf("report %+v", r)
	}

	three := roundTrip(t, propose(t, g, edit, ops[0], ops[3], ops[4]))
	r, err = VerifyNext(g, three, now)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != 2 || r.Hash != three.Hash() || len(r.Counted) != 3 {
		t.Fatalf("report %+v", r)
	}
	if _, ok := three.Body().Member(add.id); !ok {
		t.Fatal("the added member is not in version 2")
	}
}

// The threshold that applies is the previous version's: a version that
// raises M to 4 still needs only 3, and the one after it needs 4.
func TestThresholdOfPreviousVersion(t *testing.T) {
	ops := newOperators(t, 5, false)
	g := mustGenesis(t, ops, 3)
	v2 := propose(t, g, func(b *Body) { b.Threshold = 4 }, ops[0], ops[1], ops[2])
	if _, err := VerifyNext(g, v2, now); err != nil {
		t.Fatal(err)
	}
	v3 := propose(t, v2, func(b *Body) { b.Members[0].Name = "x" }, ops[0], ops[1], ops[2])
	_, err := VerifyNext(v2, v3, now)
	wantErr(t, err, ErrThreshold)
	if err := v3.Sign(ops[3].key); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyNext(v2, v3, now); err != nil {
		t.Fatal(err)
	}
}

// An older or equal version is a replay or a rollback; a gap is not next.
func TestReplayAndGap(t *testing.T) {
	ops := newOperators(t, 3, false)
	g := mustGenesis(t, ops, 2)
	v2 := propose(t, g, func(b *Body) { b.Threshold = 1 }, ops[0], ops[1])
	v3 := propose(t, v2, func(b *Body) { b.Threshold = 2 }, ops[2])
	if _, err := VerifyNext(v2, v3, now); err != nil {
		t.Fatal(err)
	}
	_, err := VerifyNext(v3, v2, now) // rollback to a once-valid version
	wantErr(t, err, ErrStale, ErrNotNext)
	_, err = VerifyNext(v2, v2, now) // the same version again
	wantErr(t, err, ErrStale)
	_, err = VerifyNext(g, v3, now) // v2 missing
	wantErr(t, err, ErrNotNext)
	if errors.Is(err, ErrStale) {
		t.Fatal("a gap reported as stale")
	}
}

// A version that does not link to the current one is refused even when
// signed by everyone: it belongs to another history.
func TestBadLink(t *testing.T) {
	ops := newOperators(t, 3, false)
	g := mustGenesis(t, ops, 2)
	other, err := Genesis(members(ops), 1, time.Time{}) // a fork of genesis
	if err != nil {
		t.Fatal(err)
	}
	forked := propose(t, other, nil, ops...)
	_, err = VerifyNext(g, forked, now)
	wantErr(t, err, ErrBadLink)
}

// Forged, repeated and non-member signatures do not count, and the report
// says which and why.
func TestSignaturesThatDoNotCount(t *testing.T) {
	ops := newOperators(t, 4, true)
	outsider := newOperators(t, 1, false)[0]
	g := mustGenesis(t, ops, 3)
	d := propose(t, g, nil, ops[0], outsider)
	// A copy of ops[0]'s signature again, a forged one in ops[1]'s name
	// (ops[2]'s signature relabelled), and a signature over other bytes.
	sig0 := d.Signatures()[0]
	other := propose(t, g, func(b *Body) { b.Threshold = 1 }, ops[3])
	forged := Signature{Signer: ops[1].id, Sig: signOf(t, propose(t, g, nil, ops[2]), ops[2].id)}
	for _, s := range []Signature{sig0, forged, {Signer: ops[3].id, Sig: other.Signatures()[0].Sig}} {
		if err := d.AddSignature(s); err != nil {
			t.Fatal(err)
		}
	}
	d = roundTrip(t, d)
	r, err := VerifyNext(g, d, now)
	wantErr(t, err, ErrThreshold)
	if !slices.Equal(r.Counted, []peer.ID{ops[0].id}) {
		t.Fatalf("counted %v", r.Counted)
	}
	want := []struct {
		signer peer.ID
		kind   error
	}{{outsider.id, ErrNotMember}, {ops[0].id, ErrDuplicateSigner}, {ops[1].id, ErrBadSignature}, {ops[3].id, ErrBadSignature}}
	if len(r.Rejected) != len(want) {
		t.Fatalf("rejected %+v", r.Rejected)
	}
	for i, w := range want {
		if got := r.Rejected[i]; got.Signer != w.signer || !errors.Is(got.Err, w.kind) || got.Index != i+1 {
			t.Errorf("rejection %d: %+v, want %s %v", i, got, w.signer, w.kind)
		}
	}
	// Sign refuses a second signature by the same key.
	wantErr(t, d.Sign(ops[0].key), ErrDuplicateSigner)
}

func signOf(tb testing.TB, d *Document, id peer.ID) []byte {
	tb.Helper()
	for _, s := range d.Signatures() {
		if s.Signer == id {
			return s.Sig
		}
	}
	tb.Fatalf("no signature by %s", id)
	return nil
}

// A removed member's signature counts for the version that removes it (it
// is a member of the previous version) and for no later one.
func TestRemovedMemberSignsOwnRemovalOnly(t *testing.T) {
	ops := newOperators(t, 4, false)
	g := mustGenesis(t, ops, 2)
	gone := ops[3]
	remove := func(b *Body) {
		b.Members = slices.DeleteFunc(b.Members, func(m Member) bool { return m.ID == gone.id })
	}
	v2 := propose(t, g, remove, gone, ops[0])
	r, err := VerifyNext(g, v2, now)
	if err != nil {
		t.Fatalf("removal signed by the removed member and one other: %v", err)
	}
	if !slices.Contains(r.Counted, gone.id) {
		t.Fatalf("counted %v", r.Counted)
	}
	v3 := propose(t, v2, func(b *Body) { b.Members[0].Name = "renamed" }, gone, ops[1])
	r, err = VerifyNext(v2, v3, now)
	wantErr(t, err, ErrThreshold)
	if len(r.Rejected) != 1 || r.Rejected[0].Signer != gone.id || !errors.Is(r.Rejected[0].Err, ErrNotMember) {
		t.Fatalf("rejected %+v", r.Rejected)
	}
}

// An expired version is refused; an expired current version can still be
// replaced, or the members could never recover from a lapsed expiry.
func TestExpiry(t *testing.T) {
	ops := newOperators(t, 3, false)
	g, err := Genesis(members(ops), 2, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyGenesis(g, now); err != nil {
		t.Fatal(err)
	}
	_, err = VerifyGenesis(g, now.Add(time.Hour))
	wantErr(t, err, ErrExpired)

	v2 := propose(t, g, func(b *Body) { b.Expires = now.Add(2 * time.Hour) }, ops[0], ops[1])
	if _, err := VerifyNext(g, v2, now.Add(90*time.Minute)); err != nil {
		t.Fatalf("replacing an expired version: %v", err)
	}
	_, err = VerifyNext(g, v2, now.Add(2*time.Hour))
	wantErr(t, err, ErrExpired)
	if !v2.Expired(now.Add(2*time.Hour)) || v2.Expired(now) {
		t.Fatal("Expired")
	}
}

// A genesis document must be version 1; its signatures are not needed.
func TestVerifyGenesis(t *testing.T) {
	ops := newOperators(t, 2, false)
	g := mustGenesis(t, ops, 1)
	if _, err := VerifyGenesis(g, now); err != nil {
		t.Fatal(err)
	}
	v2 := propose(t, g, nil, ops[0])
	_, err := VerifyGenesis(v2, now)
	wantErr(t, err, ErrNotGenesis)
}

// Only a signer's first signature is verified: a document holding a
// thousand bad signatures in one member's name costs one verification, not
// a thousand. A later signature by the same signer is a duplicate even
// when the first did not verify.
func TestOnlyFirstSignatureOfSignerVerified(t *testing.T) {
	ops := newOperators(t, 3, false)
	g := mustGenesis(t, ops, 2)
	d := propose(t, g, nil, ops[1])
	// A well-formed signature by ops[0], over other bytes, then its
	// valid one.
	wrong := signOf(t, propose(t, g, func(b *Body) { b.Threshold = 1 }, ops[0]), ops[0].id)
	good := signOf(t, propose(t, g, nil, ops[0]), ops[0].id)
	for _, sig := range [][]byte{wrong, wrong, good} {
		if err := d.AddSignature(Signature{Signer: ops[0].id, Sig: sig}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := VerifyNext(g, roundTrip(t, d), now)
	wantErr(t, err, ErrThreshold)
	if !slices.Equal(r.Counted, []peer.ID{ops[1].id}) {
		t.Fatalf("counted %v, want only %s", r.Counted, ops[1].id)
	}
	want := []error{ErrBadSignature, ErrDuplicateSigner, ErrDuplicateSigner}
	if len(r.Rejected) != len(want) {
		t.Fatalf("rejected %+v", r.Rejected)
	}
	for i, w := range want {
		if got := r.Rejected[i]; got.Index != i+1 || !errors.Is(got.Err, w) {
			t.Errorf("rejection %d: %+v, want %v", i, got, w)
		}
	}
}
