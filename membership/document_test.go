package membership

import (
	"bytes"
	"crypto/rand"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/membership/pb"
)

// One membership has one encoding, whatever order and spelling it was
// given in: members sorted, prefixes masked, unmapped, sorted and unique.
func TestCanonicalForm(t *testing.T) {
	ops := newOperators(t, 3, true)
	ms := members(ops)
	ms[0].Addrs = []netip.Prefix{netip.MustParsePrefix("10.1.2.3/16"), netip.MustParsePrefix("::ffff:127.0.0.2/128"), netip.MustParsePrefix("10.1.0.0/16")}
	ms[0].Name, ms[0].Role = "operator-1", "verifier"
	a, err := Genesis(ms, 2, now)
	if err != nil {
		t.Fatal(err)
	}
	rev := slices.Clone(ms)
	slices.Reverse(rev)
	rev[2].Addrs = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32"), netip.MustParsePrefix("10.1.0.0/16")}
	b, err := Genesis(rev, 2, now.Add(999*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.SignedBytes(), b.SignedBytes()) || a.Hash() != b.Hash() {
		t.Fatal("two spellings of one membership encode differently")
	}
	if !bytes.HasPrefix(a.SignedBytes(), []byte("bitvmx-membership-v1\x00")) {
		t.Fatal("signed bytes without the domain prefix")
	}
	body := a.Body()
	if !slices.IsSortedFunc(body.Members, compareMembers) {
		t.Fatal("members not sorted")
	}
	m, _ := body.Member(ops[0].id)
	if got := slices.Clone(m.Addrs); len(got) != 2 || got[0].String() != "10.1.0.0/16" || got[1].String() != "127.0.0.2/32" || m.Role != "verifier" {
		t.Fatalf("member %+v", m)
	}
	// The round trip keeps everything, signatures too.
	if err := a.Sign(ops[1].key); err != nil {
		t.Fatal(err)
	}
	c := roundTrip(t, a)
	if c.Hash() != a.Hash() || len(c.Signatures()) != 1 || !c.Body().Expires.Equal(now) {
		t.Fatalf("round trip: %v", c)
	}
}

// Decode refuses a body that is not the canonical encoding of what it
// holds: the same content under two encodings would have two hashes.
func TestDecodeRefusesNonCanonical(t *testing.T) {
	ops := newOperators(t, 2, false)
	g := mustGenesis(t, ops, 1)
	var body pb.Body
	if err := proto.Unmarshal(g.raw, &body); err != nil {
		t.Fatal(err)
	}
	enc := func(m *pb.Body, extra []byte) []byte {
		raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := proto.Marshal(&pb.Document{Body: append(raw, extra...)})
		if err != nil {
			t.Fatal(err)
		}
		return doc
	}
	if _, err := Decode(enc(&body, nil)); err != nil {
		t.Fatalf("canonical body refused: %v", err)
	}
	cases := map[string]func() []byte{
		"members out of order": func() []byte {
			m := proto.Clone(&body).(*pb.Body)
			slices.Reverse(m.Members)
			return enc(m, nil)
		},
		"unmasked prefix": func() []byte {
			m := proto.Clone(&body).(*pb.Body)
			m.Members[0].Addrs = []string{"10.1.2.3/16"}
			return enc(m, nil)
		},
		"unknown field": func() []byte {
			return enc(&body, protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
		},
		"default written out": func() []byte {
			return enc(&body, protowire.AppendVarint(protowire.AppendTag(nil, 4, protowire.VarintType), 0))
		},
		"field repeated": func() []byte {
			return enc(&body, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1))
		},
	}
	for name, data := range cases {
		_, err := Decode(data())
		wantErr(t, err, ErrMalformed)
		if !strings.Contains(err.Error(), "canonical") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Bodies that break a rule of their own are refused when built and when
// decoded.
func TestInvalidBodies(t *testing.T) {
	ops := newOperators(t, 2, false)
	rsa, _, err := crypto.GenerateRSAKeyPair(2048, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaID, _ := peer.IDFromPrivateKey(rsa)
	ms := members(ops)
	cases := map[string]Body{
		"version 0":             {Version: 0, Threshold: 1, Members: ms},
		"no members":            {Version: 1, Threshold: 1},
		"threshold 0":           {Version: 1, Threshold: 0, Members: ms},
		"threshold > N":         {Version: 1, Threshold: 3, Members: ms},
		"duplicate member":      {Version: 1, Threshold: 1, Members: []Member{ms[0], ms[1], ms[0]}},
		"genesis with prev":     {Version: 1, Threshold: 1, Members: ms, Prev: Hash{1}},
		"v2 without prev":       {Version: 2, Threshold: 1, Members: ms},
		"RSA member":            {Version: 1, Threshold: 1, Members: []Member{{ID: rsaID}}},
		"text as ID":            {Version: 1, Threshold: 1, Members: []Member{{ID: peer.ID(ops[0].id.String())}}},
		"control in name":       {Version: 1, Threshold: 1, Members: []Member{{ID: ops[0].id, Name: "a\x1b[2Kb"}}},
		"bidi override in name": {Version: 1, Threshold: 1, Members: []Member{{ID: ops[0].id, Name: "a\u202eb"}}},
		"long role":             {Version: 1, Threshold: 1, Members: []Member{{ID: ops[0].id, Role: strings.Repeat("r", MaxRoleLen+1)}}},
		"invalid prefix":        {Version: 1, Threshold: 1, Members: []Member{{ID: ops[0].id, Addrs: []netip.Prefix{{}}}}},
		"expiry before 1970":    {Version: 1, Threshold: 1, Members: ms, Expires: time.Unix(-5, 0)},
	}
	for name, b := range cases {
		if _, err := NewDocument(b); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			wantErr(t, err, ErrInvalid)
		}
	}
}

// Combine merges copies of one proposal signed by different operators,
// keeps one signature per signer, drops signatures that do not verify, and
// refuses copies of different proposals.
func TestCombine(t *testing.T) {
	ops := newOperators(t, 4, true)
	g := mustGenesis(t, ops, 3)
	a := roundTrip(t, propose(t, g, nil, ops[0]))
	b := roundTrip(t, propose(t, g, nil, ops[1]))
	c := roundTrip(t, a) // a copy already holding ops[0]'s signature
	if err := c.Sign(ops[2].key); err != nil {
		t.Fatal(err)
	}
	bad := roundTrip(t, propose(t, g, nil))
	if err := bad.AddSignature(Signature{Signer: ops[3].id, Sig: signOf(t, a, ops[0].id)}); err != nil {
		t.Fatal(err)
	}
	all, rejected, err := Combine(a, b, c, bad)
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Signatures()) != 3 || len(rejected) != 1 || rejected[0].Copy != 3 || rejected[0].Signer != ops[3].id {
		t.Fatalf("signatures %d, rejected %+v", len(all.Signatures()), rejected)
	}
	if _, err := VerifyNext(g, all, now); err != nil {
		t.Fatal(err)
	}
	other := propose(t, g, func(b *Body) { b.Threshold = 2 }, ops[3])
	_, _, err = Combine(a, other)
	wantErr(t, err, ErrDifferentBody)
}

// Entries are what the gater's allowlist takes; roles are left out.
func TestEntries(t *testing.T) {
	ops := newOperators(t, 2, false)
	ms := members(ops)
	ms[1].Name, ms[1].Role = "op", "watcher"
	ms[1].Addrs = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	d, err := Genesis(ms, 1, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := d.Allowlist()
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != 2 || !l.Allowed(ops[1].id, netip.MustParseAddr("127.0.0.2")) || l.Allowed(ops[1].id, netip.MustParseAddr("127.0.0.3")) ||
		!l.Allowed(ops[0].id, netip.MustParseAddr("10.9.9.9")) {
		t.Fatalf("allowlist %+v", l.Entries())
	}
	back := MembersFromAllowlist(l.Entries())
	again, err := Genesis(back, 1, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := l.Get(ops[1].id); e.Name != "op" {
		t.Fatalf("entry %+v", e)
	}
	if m, _ := again.Body().Member(ops[1].id); m.Role != "" || m.Name != "op" || len(m.Addrs) != 1 {
		t.Fatalf("member %+v", m)
	}
}

// Decode bounds what it accepts before parsing.
func TestDecodeCaps(t *testing.T) {
	_, err := Decode(make([]byte, MaxDocumentSize+1))
	wantErr(t, err, ErrMalformed)
	ops := newOperators(t, 1, false)
	g := mustGenesis(t, ops, 1)
	m := &pb.Document{Body: g.raw}
	for range MaxMembers + 1 {
		m.Signatures = append(m.Signatures, &pb.Signature{Signer: []byte(ops[0].id), Sig: []byte{1}})
	}
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Decode(data)
	wantErr(t, err, ErrMalformed)
}
