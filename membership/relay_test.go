package membership

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/membership/pb"
)

// relayMembers returns the members of ops, the second bound to an IP and
// allowed over a relay.
func relayMembers(ops []operator) []Member {
	ms := members(ops)
	ms[1].Addrs = []netip.Prefix{netip.MustParsePrefix("10.0.0.2/32")}
	ms[1].Relay = true
	return ms
}

// A member's relay permission survives encoding and decoding, is part of
// the signed bytes (field 5 of Member, written only when true) and reaches
// the allowlist entry: without it an IP-bound member was refused over a
// relay (relay_not_allowed) on every node run from a document.
func TestRelayRoundTrip(t *testing.T) {
	ops := newOperators(t, 2, true)
	g, err := Genesis(relayMembers(ops), 1, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	back := roundTrip(t, g)
	m, ok := back.Body().Member(ops[1].id)
	if !ok || !m.Relay || len(m.Addrs) != 1 {
		t.Fatalf("member after a round trip: %+v", m)
	}
	if other, _ := back.Body().Member(ops[0].id); other.Relay {
		t.Fatalf("relay set on a member that did not have it: %+v", other)
	}
	var body pb.Body
	if err := proto.Unmarshal(back.raw, &body); err != nil {
		t.Fatal(err)
	}
	for _, pm := range body.Members {
		if got, want := pm.Relay, string(pm.Id) == string(ops[1].id); got != want {
			t.Fatalf("encoded relay of %x: %v, want %v", pm.Id, got, want)
		}
	}

	l, err := back.Allowlist()
	if err != nil {
		t.Fatal(err)
	}
	e, ok := l.Get(ops[1].id)
	if !ok || !e.Relay || !e.AllowsRelayed() {
		t.Fatalf("allowlist entry %+v", e)
	}
	// An unknown (zero) IP is how the gater asks about a relayed
	// connection.
	if !l.Allowed(ops[1].id, netip.Addr{}) || l.Allowed(ops[1].id, netip.MustParseAddr("10.0.0.3")) {
		t.Fatal("the relay permission should waive the IP binding over a relay only")
	}
}

// The relay permission is signed: a copy whose body sets or clears it is
// another version, with another hash, and the signatures made on one do
// not count for the other.
func TestRelaySigned(t *testing.T) {
	ops := newOperators(t, 3, false)
	g := mustGenesis(t, ops, 2)
	grant := func(b *Body) {
		for i := range b.Members {
			if b.Members[i].ID == ops[2].id {
				b.Members[i].Addrs = []netip.Prefix{netip.MustParsePrefix("10.0.0.2/32")}
				b.Members[i].Relay = true
			}
		}
	}
	withRelay := propose(t, g, grant, ops[0], ops[1])
	if _, err := VerifyNext(g, roundTrip(t, withRelay), now); err != nil {
		t.Fatal(err)
	}
	// The same body with the permission cleared, under the signatures
	// made for it set.
	b := withRelay.Body()
	for i := range b.Members {
		b.Members[i].Relay = false
	}
	without, err := NewDocument(b)
	if err != nil {
		t.Fatal(err)
	}
	if without.Hash() == withRelay.Hash() || bytes.Equal(without.SignedBytes(), withRelay.SignedBytes()) {
		t.Fatal("clearing relay left the signed bytes unchanged")
	}
	for _, s := range withRelay.Signatures() {
		if err := without.AddSignature(s); err != nil {
			t.Fatal(err)
		}
	}
	r, err := VerifyNext(g, roundTrip(t, without), now)
	wantErr(t, err, ErrThreshold)
	if len(r.Counted) != 0 || len(r.Rejected) != 2 {
		t.Fatalf("report %+v", r)
	}
}

// A document in which no member has the relay permission encodes as it
// did before the field existed (TestSignedBytesVector pins those bytes),
// so older nodes keep reading it; one that sets it carries field 5 of
// Member as "2801", which an older node, re-encoding what it parsed
// without the field, refuses as not canonical.
func TestRelayEncoding(t *testing.T) {
	ops := newOperators(t, 1, true)
	ms := members(ops)
	plain, err := Genesis(ms, 1, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	ms[0].Relay = true
	relayed, err := Genesis(ms, 1, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	p, r := plain.SignedBytes(), relayed.SignedBytes()
	if !bytes.HasSuffix(r, []byte{0x28, 0x01}) || len(r) != len(p)+2 {
		t.Fatalf("relay field: plain %x, relayed %x", p, r)
	}

	// What an older node does: its Member has no field 5, so the field is
	// unknown to it, dropped on re-encoding, and the body refused. The
	// same check refuses an unknown field here.
	var body pb.Body
	if err := proto.Unmarshal(relayed.raw, &body); err != nil {
		t.Fatal(err)
	}
	body.Members[0].Relay = false
	body.Members[0].ProtoReflect().SetUnknown([]byte{0x30, 0x01}) // field 6, varint 1
	raw, err := proto.Marshal(&body)
	if err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(&pb.Document{Body: raw})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Decode(data)
	wantErr(t, err, ErrMalformed)
}

// MembersFromAllowlist keeps an entry's relay permission: "membership
// init" dropped it, and a YAML allowlist's "relay: true" was lost on the
// way to the document.
func TestMembersFromAllowlistKeepsRelay(t *testing.T) {
	ops := newOperators(t, 2, false)
	entries := []allowlist.Entry{
		{ID: ops[0].id},
		{ID: ops[1].id, Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/32")}, Relay: true},
	}
	ms := MembersFromAllowlist(entries)
	if ms[0].Relay || !ms[1].Relay {
		t.Fatalf("members %+v", ms)
	}
	g, err := Genesis(ms, 1, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range g.Entries() {
		if e.Relay != (e.ID == ops[1].id) {
			t.Fatalf("entry %+v", e)
		}
	}
}
