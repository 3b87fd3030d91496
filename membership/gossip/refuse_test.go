package gossip_test

import (
	"bufio"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip/pb"
	mpb "github.com/bitvmx/go-bitvmx-p2p/membership/pb"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

func genesis(t *testing.T, m int, ids ...tu.Identity) *membership.Document {
	t.Helper()
	var ms []membership.Member
	for _, id := range ids {
		ms = append(ms, membership.Member{ID: id.ID})
	}
	d, err := membership.Genesis(ms, m, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// rawSession opens a membership stream to m from a bare host with id's
// key and writes frames, each already encoded, after a Hello for claim.
func rawSession(t *testing.T, id tu.Identity, m *member, claim *membership.Document, frames ...*pb.Frame) network.Stream {
	t.Helper()
	h := tu.RawHost(t, id.Key, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := h.Connect(ctx, tu.AddrInfo(m.node)); err != nil {
		t.Fatal(err)
	}
	st, err := h.NewStream(ctx, m.id.ID, gossip.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(st)
	all := append([]*pb.Frame{{Kind: &pb.Frame_Hello{Hello: &pb.Hello{Version: claim.Version(), Hash: hashBytes(claim)}}}}, frames...)
	for _, f := range all {
		if _, err := protodelim.MarshalTo(bw, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestMalformedDocumentCharged(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	ma := start(t, a, v1)
	rawSession(t, b, ma, v1, &pb.Frame{Kind: &pb.Frame_Document{Document: []byte("not a document")}})
	r := waitRejected(t, ma, b.ID)
	if r.Reason != gossip.ReasonMalformed || !r.Charged {
		t.Fatalf("rejected %+v", r)
	}
	if c := nextCharge(t, ma); c.peer != b.ID || c.reason != ratelimit.MalformedMessage {
		t.Fatalf("charge %+v", c)
	}
	wantCurrent(t, ma, v1)
}

func TestBadLinkCharged(t *testing.T) {
	a, b, c := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	other := genesis(t, 1, a, b, c) // another history
	next := propose(t, other, nil, b)
	ma := start(t, a, v1)
	data, err := next.Encode()
	if err != nil {
		t.Fatal(err)
	}
	rawSession(t, b, ma, v1, &pb.Frame{Kind: &pb.Frame_Document{Document: data}})
	if r := waitRejected(t, ma, b.ID); r.Reason != gossip.ReasonBadLink || !r.Charged {
		t.Fatalf("rejected %+v", r)
	}
	wantCurrent(t, ma, v1)
}

// The gater admits whoever the allowlist holds; the session admits only
// members of the current document, should the two ever differ.
func TestSessionOnlyForMembers(t *testing.T) {
	a, b, stranger := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	ma := start(t, a, v1)
	if err := ma.list.Add(allowlist.Entry{ID: stranger.ID}); err != nil {
		t.Fatal(err)
	}
	rawSession(t, stranger, ma, v1)
	if r := waitRejected(t, ma, stranger.ID); r.Reason != gossip.ReasonNotMember || r.Charged {
		t.Fatalf("rejected %+v", r)
	}
}

// A node never starts from a version older than the one it persisted.
func TestNewRefusesOlderThanSaved(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	docs := chain(t, 2, a, b)
	path := t.TempDir() + "/membership.pb"
	if err := membership.SaveNewer(path, docs[1]); err != nil {
		t.Fatal(err)
	}
	list, err := docs[0].Allowlist()
	if err != nil {
		t.Fatal(err)
	}
	n := tu.Node(t, a, list)
	if _, err := gossip.New(gossip.Config{Host: n.Host(), Allowlist: list, Current: docs[0], Path: path}); !errors.Is(err, gossip.ErrConfig) {
		t.Fatalf("New from version 1 with version 2 saved: %v", err)
	}
	s, err := gossip.New(gossip.Config{Host: n.Host(), Allowlist: list, Current: docs[1], Path: path})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A fresh file receives the version in force at start.
	fresh := t.TempDir() + "/membership.pb"
	if s, err = gossip.New(gossip.Config{Host: n.Host(), Allowlist: list, Current: docs[0], Path: fresh}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if saved, err := membership.ReadFile(fresh); err != nil || saved.Hash() != docs[0].Hash() {
		t.Fatalf("saved at start: %v, %v", saved, err)
	}
}

// A member sends the versions after the one in the other's Hello, oldest
// first. An old document, which would be decoded and skipped as stale at no
// cost, hundreds of times per session, is out of order: refused and
// charged.
func TestDocumentNotAfterHelloCharged(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	v2 := propose(t, v1, nil, b)
	ma := start(t, a, v2, v1)
	data, err := v1.Encode()
	if err != nil {
		t.Fatal(err)
	}
	old := &pb.Frame{Kind: &pb.Frame_Document{Document: data}}
	rawSession(t, b, ma, v2, old, old, old)
	if r := waitRejected(t, ma, b.ID); r.Reason != gossip.ReasonMalformed || !r.Charged {
		t.Fatalf("rejected %+v, want malformed and charged", r)
	}
	if c := nextCharge(t, ma); c.peer != b.ID || c.reason != ratelimit.MalformedMessage {
		t.Fatalf("charge %+v", c)
	}
	wantCurrent(t, ma, v2)
}

// A version that would be refused without a charge (a gap, an expired
// version) is refused before the document is decoded: decoding parses
// every member's key, a thousand of which take milliseconds, and a member
// must not get that for free. A body whose member is no key shows it: the
// document is refused for its version, uncharged, not decoded and found
// malformed.
func TestFreeRefusalBeforeDecoding(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	expired := time.Now().Add(-time.Hour).Unix()
	for _, tc := range []struct {
		name    string
		body    *mpb.Body
		version uint64
		reason  gossip.Reason
	}{
		{"gap", &mpb.Body{Version: 3, Threshold: 1, Prev: make([]byte, 32)}, 3, gossip.ReasonGap},
		{"expired", &mpb.Body{Version: 2, Threshold: 1, Prev: hashBytes(v1), Expires: expired}, 2, gossip.ReasonExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ma := start(t, a, v1)
			tc.body.Members = []*mpb.Member{{Id: []byte("not a peer ID")}}
			body, err := proto.Marshal(tc.body)
			if err != nil {
				t.Fatal(err)
			}
			data, err := proto.Marshal(&mpb.Document{Body: body})
			if err != nil {
				t.Fatal(err)
			}
			rawSession(t, b, ma, v1, &pb.Frame{Kind: &pb.Frame_Document{Document: data}})
			if r := waitRejected(t, ma, b.ID); r.Reason != tc.reason || r.Charged || r.Version != tc.version {
				t.Fatalf("rejected %+v, want %s, version %d, not charged", r, tc.reason, tc.version)
			}
			wantCurrent(t, ma, v1)
		})
	}
}

// A document of many bad signatures yields an event of a bounded size: the
// first rejections, and how many were left out.
func TestRejectedEventCapsRejections(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 2, a, b)
	next := propose(t, v1, nil)
	const sigs = 200
	for i := 0; i < sigs; i++ {
		// The first does not verify, the others repeat its signer.
		if err := next.AddSignature(membership.Signature{Signer: b.ID, Sig: []byte("not a signature")}); err != nil {
			t.Fatal(err)
		}
	}
	data, err := next.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ma := start(t, a, v1)
	rawSession(t, b, ma, v1, &pb.Frame{Kind: &pb.Frame_Document{Document: data}})
	r := waitRejected(t, ma, b.ID)
	if r.Reason != gossip.ReasonThreshold || !r.Charged {
		t.Fatalf("rejected %+v", r)
	}
	const kept = 16
	if got := r.Report.Rejected; len(got) != kept || cap(got) != kept {
		t.Fatalf("event keeps %d rejections (capacity %d), want %d", len(got), cap(got), kept)
	}
	if r.Omitted != sigs-kept {
		t.Fatalf("omitted %d, want %d", r.Omitted, sigs-kept)
	}
	for i, x := range r.Report.Rejected {
		want := membership.ErrDuplicateSigner
		if i == 0 {
			want = membership.ErrBadSignature
		}
		if x.Index != i || !errors.Is(x.Err, want) {
			t.Fatalf("rejection %d: %+v, want index %d, %v", i, x, i, want)
		}
	}
	wantCurrent(t, ma, v1)
}

// A malformed document's error does not copy what the sender put in it:
// here a long unchecked ID and a long address of bytes %q escapes.
func TestMalformedErrorBounded(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	long := string(make([]byte, 200<<10))
	body, err := proto.Marshal(&mpb.Body{Version: 2, Threshold: 1, Prev: hashBytes(v1),
		Members: []*mpb.Member{{Id: []byte(long), Addrs: []string{long}}}})
	if err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(&mpb.Document{Body: body})
	if err != nil {
		t.Fatal(err)
	}
	ma := start(t, a, v1)
	rawSession(t, b, ma, v1, &pb.Frame{Kind: &pb.Frame_Document{Document: data}})
	r := waitRejected(t, ma, b.ID)
	if r.Reason != gossip.ReasonMalformed || !r.Charged || r.Err == nil {
		t.Fatalf("rejected %+v", r)
	}
	if n := len(r.Err.Error()); n > 1024 {
		t.Fatalf("error of %d bytes for a document of %d", n, len(data))
	}
	wantCurrent(t, ma, v1)
}
