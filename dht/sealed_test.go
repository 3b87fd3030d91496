package dht

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// edIdentity makes an ed25519 identity, the other key type members may use.
func edIdentity(t testing.TB) tu.Identity {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return tu.Identity{Key: k, ID: id}
}

// memberDoc returns a membership document of version v (v > 1 links to a
// made-up previous hash: the DHT does not verify the chain) holding ids.
func memberDoc(t testing.TB, v uint64, ids ...tu.Identity) *membership.Document {
	t.Helper()
	b := membership.Body{Version: v, Threshold: 1}
	if v > 1 {
		b.Prev = membership.Hash{1}
	}
	for _, id := range ids {
		b.Members = append(b.Members, membership.Member{ID: id.ID})
	}
	d, err := membership.NewDocument(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func sealFor(t testing.TB, r Record, id tu.Identity, doc *membership.Document) []byte {
	t.Helper()
	b, skipped, err := sealSealedRecord(r, id.Key, doc)
	if err != nil || len(skipped) != 0 {
		t.Fatalf("seal: %v (skipped %v)", err, skipped)
	}
	return b
}

// Members of the document read the record, whichever their key type; a
// member removed in the next version cannot read what is sealed after it.
func TestSealedRecordRemovedMember(t *testing.T) {
	pub, secp, ed, removed := tu.NewIdentity(t), tu.NewIdentity(t), edIdentity(t), tu.NewIdentity(t)
	now := time.Now()
	r := recordOf(pub, now)

	v1 := sealFor(t, r, pub, memberDoc(t, 1, pub, secp, ed, removed))
	for _, reader := range []tu.Identity{pub, secp, ed, removed} {
		if _, err := openSealedHeader(pub.ID, v1); err != nil {
			t.Fatal(err)
		}
		got, err := unsealRecord(pub.ID, v1, reader.Key)
		if err != nil || len(got.Addrs) != 1 || !got.Addrs[0].Equal(testAddr) || got.Seq != r.Seq {
			t.Fatalf("v1 read by %s: %+v, %v", reader.Key.Type(), got, err)
		}
	}

	r2 := r
	r2.Seq++
	v2 := sealFor(t, r2, pub, memberDoc(t, 2, pub, secp, ed))
	for _, reader := range []tu.Identity{pub, secp, ed} {
		if got, err := unsealRecord(pub.ID, v2, reader.Key); err != nil || got.Seq != r2.Seq {
			t.Fatalf("v2 read by %s: %+v, %v", reader.Key.Type(), got, err)
		}
	}
	hdr, err := unsealRecord(pub.ID, v2, removed.Key)
	if !errors.Is(err, ErrNotRecipient) {
		t.Fatalf("removed member opened version 2's record: %v", err)
	}
	if hdr.Seq != r2.Seq || len(hdr.Addrs) != 0 {
		t.Fatalf("header %+v", hdr)
	}
	if !strings.Contains(err.Error(), "membership version 2") {
		t.Fatalf("the error does not name the version: %v", err)
	}
}

// Each node refuses the other format with a reason naming it.
func TestSealedAndPlainAreNotMixed(t *testing.T) {
	id := tu.NewIdentity(t)
	now := time.Now()
	plain := seal(t, recordOf(id, now), id)
	sealed := sealFor(t, recordOf(id, now), id, memberDoc(t, 1, id))
	list := tu.Allowlist(t, id)

	var heard []string
	hear := func(p peer.ID, _ error) { heard = append(heard, p.String()) }
	on := &validator{list: list, now: time.Now, retain: time.Hour, sealed: true, otherFormat: hear}
	off := &validator{list: list, now: time.Now, retain: time.Hour, otherFormat: hear}
	key := RecordKey(id.ID)
	if err := on.Validate(key, sealed); err != nil {
		t.Fatal(err)
	}
	if err := off.Validate(key, plain); err != nil {
		t.Fatal(err)
	}
	if err := on.Validate(key, plain); !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), "accepts sealed records") {
		t.Fatalf("plain record on a membership node: %v", err)
	}
	if err := off.Validate(key, sealed); !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), "without a membership document") {
		t.Fatalf("sealed record on a plain node: %v", err)
	}
	if i, err := on.Select(key, [][]byte{plain, sealed}); err != nil || i != 1 {
		t.Fatalf("select: %d, %v", i, err)
	}
	// Both refusals were reported for the log; a broken record is not one.
	bad := sealed[:len(sealed)-3]
	_ = on.Validate(key, bad)
	if len(heard) != 2 || heard[0] != id.ID.String() {
		t.Fatalf("format refusals reported: %v", heard)
	}
}

// The header is checked like a plain record: signer, subject, limits.
func TestSealedHeaderChecks(t *testing.T) {
	id, other := tu.NewIdentity(t), tu.NewIdentity(t)
	now := time.Now()
	doc := memberDoc(t, 1, id, other)

	if _, err := openSealedHeader(other.ID, sealFor(t, recordOf(id, now), id, doc)); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("another peer's record: %v", err)
	}
	aboutOther := recordOf(id, now)
	aboutOther.Peer = other.ID
	if _, err := openSealedHeader(id.ID, sealFor(t, aboutOther, id, doc)); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("record about another peer: %v", err)
	}
	long := recordOf(id, now)
	long.Expires = now.Add(MaxRecordLifetime + time.Second)
	if _, err := openSealedHeader(id.ID, sealFor(t, long, id, doc)); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("lifetime over the limit: %v", err)
	}
	data := sealFor(t, recordOf(id, now), id, doc)
	data[len(data)/2] ^= 1
	if _, err := openSealedHeader(id.ID, data); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("flipped byte: %v", err)
	}
	if _, err := openSealedHeader(id.ID, make([]byte, MaxSealedRecordSize+1)); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("oversized: %v", err)
	}
}
