package gossip_test

import (
	"bufio"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip/pb"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// charge is one misbehaviour token a service spent.
type charge struct {
	peer   peer.ID
	reason ratelimit.Reason
}

// member is one running node with its membership service.
type member struct {
	id      tu.Identity
	node    *p2p.Node
	list    *allowlist.List
	svc     *gossip.Service
	path    string
	reg     *prometheus.Registry
	charges chan charge
	ended   chan peer.ID // sessions peers opened, over (startTracked)
}

// start runs a node for id that trusts doc (and knows history) and its
// membership service, both stopped when the test ends.
func start(t *testing.T, id tu.Identity, doc *membership.Document, history ...*membership.Document) *member {
	t.Helper()
	return startWith(t, id, doc, func(c gossip.Config) gossip.Config {
		c.History = history
		return c
	})
}

// startWith is start with the service's Config passed through edit.
func startWith(t *testing.T, id tu.Identity, doc *membership.Document, edit func(gossip.Config) gossip.Config) *member {
	t.Helper()
	list, err := doc.Allowlist()
	if err != nil {
		t.Fatal(err)
	}
	m := &member{id: id, node: tu.Node(t, id, list), list: list, path: filepath.Join(t.TempDir(), "membership.pb"),
		reg: prometheus.NewRegistry(), charges: make(chan charge, 64)}
	m.svc, err = gossip.New(edit(gossip.Config{
		Host:      m.node.Host(),
		Allowlist: list,
		Current:   doc,
		Path:      m.path,
		Metrics:   m.reg,
		Hold:      m.node.Hold,
		Charge: func(p peer.ID, r ratelimit.Reason) {
			m.node.Charge(p, r)
			m.charges <- charge{p, r}
		},
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.svc.Close() })
	return m
}

// connect dials b from a and waits until a sees the connection.
func connect(t *testing.T, a, b *member) {
	t.Helper()
	a.node.Sender() <- p2p.Dial{Peer: b.id.ID, Addr: b.node.Addrs()[0]}
	tu.NextMatch(t, a.node.Receiver(), func(c p2p.Connected) bool { return c.Peer == b.id.ID })
}

// nextCharge waits for the next token m's service spends.
func nextCharge(t *testing.T, m *member) charge {
	t.Helper()
	select {
	case c := <-m.charges:
		return c
	case <-time.After(tu.Timeout):
		t.Fatalf("no charge within %s", tu.Timeout)
		return charge{}
	}
}

// waitApplied waits until m reports version v applied.
func waitApplied(t *testing.T, m *member, v uint64) gossip.Applied {
	t.Helper()
	return tu.NextMatch(t, m.svc.Events(), func(a gossip.Applied) bool { return a.Version == v })
}

// waitRejected waits until m refuses something from p.
func waitRejected(t *testing.T, m *member, p peer.ID) gossip.Rejected {
	t.Helper()
	return tu.NextMatch(t, m.svc.Events(), func(r gossip.Rejected) bool { return r.From == p })
}

// propose returns the version after cur edited by edit and signed by
// signers.
func propose(t *testing.T, cur *membership.Document, edit func(*membership.Body), signers ...tu.Identity) *membership.Document {
	t.Helper()
	b := cur.Next()
	if edit != nil {
		edit(&b)
	}
	d, err := membership.NewDocument(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		if err := d.Sign(s.Key); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// inject connects a bare libp2p host with key to m, runs a session in which
// it claims to hold claim and sends docs, and returns the documents m sent
// back. It stands for a member whose node misbehaves.
func inject(t *testing.T, key crypto.PrivKey, m *member, claim *membership.Document, docs ...*membership.Document) []*membership.Document {
	t.Helper()
	h := tu.RawHost(t, key, "127.0.0.1")
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := h.Connect(ctx, tu.AddrInfo(m.node)); err != nil {
		t.Fatal(err)
	}
	st, err := h.NewStream(ctx, m.id.ID, gossip.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bw := bufio.NewWriter(st)
	if _, err := protodelim.MarshalTo(bw, &pb.Frame{Kind: &pb.Frame_Hello{Hello: &pb.Hello{Version: claim.Version(), Hash: hashBytes(claim)}}}); err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		data, err := d.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := protodelim.MarshalTo(bw, &pb.Frame{Kind: &pb.Frame_Document{Document: data}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	st.CloseWrite()
	var got []*membership.Document
	br := bufio.NewReader(st)
	for i := 0; i < 64; i++ {
		var f pb.Frame
		if err := (protodelim.UnmarshalOptions{MaxSize: gossip.MaxFrameSize}).UnmarshalFrom(br, &f); err != nil {
			break // EOF, or the reset of a refusal
		}
		if data := f.GetDocument(); data != nil {
			d, err := membership.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, d)
		}
	}
	return got
}

func hashBytes(d *membership.Document) []byte {
	h := d.Hash()
	return h[:]
}

// rejectedMetric reads bitvmx_membership_rejected_total{reason} from reg.
func rejectedMetric(t *testing.T, reg *prometheus.Registry, reason gossip.Reason) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "bitvmx_membership_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == string(reason) {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no rejected_total{reason=%q}", reason)
	return 0
}

func wantCurrent(t *testing.T, m *member, d *membership.Document) {
	t.Helper()
	if got := m.svc.Current(); got.Hash() != d.Hash() {
		t.Fatalf("%s holds %s, want %s", m.id.ID, got, d)
	}
}

// TestFiveMembers follows one membership through its changes: five
// members with M = 3, a sixth operator joining, one member removed, one
// offline during both changes.
func TestFiveMembers(t *testing.T) {
	ids := make([]tu.Identity, 6)
	for i := range ids {
		ids[i] = tu.NewIdentity(t)
	}
	var genesisMembers []membership.Member
	for _, id := range ids[:5] {
		genesisMembers = append(genesisMembers, membership.Member{ID: id.ID})
	}
	v1, err := membership.Genesis(genesisMembers, 3, time.Time{})
	if err != nil {
		t.Fatal(err)
	}

	// Members 0-3 run and connect to one another; member 4 is offline.
	ms := make([]*member, 4)
	for i := range ms {
		ms[i] = start(t, ids[i], v1)
	}
	for i := range ms {
		for j := i + 1; j < len(ms); j++ {
			connect(t, ms[i], ms[j])
		}
	}

	// Two signatures of three: refused at submission, nothing sent; and
	// refused from a peer, at a cost to it.
	short := propose(t, v1, func(b *membership.Body) {
		b.Members = append(b.Members, membership.Member{ID: ids[5].ID})
	}, ids[0], ids[1])
	if rep, err := ms[0].svc.SubmitReport(context.Background(), short); !errors.Is(err, membership.ErrThreshold) ||
		len(rep.Counted) != 2 || rep.Threshold != 3 {
		t.Fatalf("submit with 2 signatures: %+v, %v, want ErrThreshold with 2 counted of 3", rep, err)
	}
	inject(t, ids[4].Key, ms[0], v1, short)
	r := waitRejected(t, ms[0], ids[4].ID)
	if r.Reason != gossip.ReasonThreshold || !r.Charged || r.Version != 2 {
		t.Fatalf("rejected %+v", r)
	}
	if c := nextCharge(t, ms[0]); c.peer != ids[4].ID || c.reason != ratelimit.ProtocolViolation {
		t.Fatalf("charge %+v", c)
	}
	if got := rejectedMetric(t, ms[0].reg, gossip.ReasonThreshold); got != 1 {
		t.Fatalf("rejected_total{threshold} = %v", got)
	}

	// A forged signature (member 1's name, another key) and a duplicated
	// one (member 0's, twice) do not count: one valid signature.
	forged := propose(t, v1, func(b *membership.Body) {
		b.Members = append(b.Members, membership.Member{ID: ids[5].ID})
	}, ids[0])
	sig0 := forged.Signatures()[0]
	other, err := ids[5].Key.Sign(forged.SignedBytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []membership.Signature{sig0, {Signer: ids[1].ID, Sig: other}} {
		if err := forged.AddSignature(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := ms[0].svc.Submit(context.Background(), forged); !errors.Is(err, membership.ErrThreshold) {
		t.Fatalf("submit forged: %v, want ErrThreshold", err)
	}
	inject(t, ids[4].Key, ms[1], v1, forged)
	r = waitRejected(t, ms[1], ids[4].ID)
	if r.Reason != gossip.ReasonThreshold || len(r.Report.Counted) != 1 || len(r.Report.Rejected) != 2 {
		t.Fatalf("rejected %+v", r)
	}
	for _, rej := range r.Report.Rejected {
		if !errors.Is(rej.Err, membership.ErrDuplicateSigner) && !errors.Is(rej.Err, membership.ErrBadSignature) {
			t.Fatalf("signature %d refused for %v", rej.Index, rej.Err)
		}
	}
	for _, m := range ms {
		wantCurrent(t, m, v1)
	}

	// Three signatures: member 5 joins, member 3 leaves. Submitted at
	// member 0, it reaches members 1 and 2; member 3 is cut off.
	v2 := propose(t, v1, func(b *membership.Body) {
		b.Members = append(b.Members[:0:0], genesisMembers[0], genesisMembers[1], genesisMembers[2], genesisMembers[4], membership.Member{ID: ids[5].ID})
	}, ids[0], ids[1], ids[2])
	if err := ms[0].svc.Submit(context.Background(), v2); err != nil {
		t.Fatal(err)
	}
	if a := waitApplied(t, ms[0], 2); a.From != "" || len(a.Added) != 1 || a.Added[0] != ids[5].ID || len(a.Removed) != 1 || a.Removed[0] != ids[3].ID {
		t.Fatalf("applied %+v", a)
	}
	for _, m := range ms[1:3] {
		if a := waitApplied(t, m, 2); a.From == "" {
			t.Fatalf("applied %+v", a)
		}
		wantCurrent(t, m, v2)
	}
	gone := map[peer.ID]bool{}
	for len(gone) < 3 {
		d := tu.Next[p2p.Disconnected](t, ms[3].node.Receiver())
		gone[d.Peer] = true
	}
	for _, m := range ms[:3] {
		if saved, err := membership.ReadFile(m.path); err != nil || saved.Hash() != v2.Hash() {
			t.Fatalf("%s persisted %v, %v", m.id.ID, saved, err)
		}
	}
	wantCurrent(t, ms[3], v1) // nobody pushes to a removed member
	ms[3].node.Sender() <- p2p.SendMsg{Peer: ids[0].ID, Addr: ms[0].node.Addrs()[0], ID: 1, Data: []byte("still here?")}
	if st := tu.NextMatch(t, ms[3].node.Receiver(), func(s p2p.Status) bool { return s.MsgID == 1 }); st.OK {
		t.Fatalf("a removed member delivered a message: %+v", st)
	}

	// The new member, installed with version 2, is admitted.
	m5 := start(t, ids[5], v2)
	connect(t, m5, ms[1])

	// A replayed version 1 is refused without rolling back, and charged:
	// a session carries only versions after the receiver's Hello, so no
	// honest member sends it. A member at version 1 is handed version 2.
	inject(t, ids[4].Key, ms[0], v1, v1)
	r = waitRejected(t, ms[0], ids[4].ID)
	if r.Reason != gossip.ReasonMalformed || !r.Charged {
		t.Fatalf("replay rejected %+v", r)
	}
	if c := nextCharge(t, ms[0]); c.peer != ids[4].ID || c.reason != ratelimit.MalformedMessage {
		t.Fatalf("replay charged %+v", c)
	}
	wantCurrent(t, ms[0], v2)
	if got := inject(t, ids[4].Key, ms[0], v1); len(got) != 1 || got[0].Hash() != v2.Hash() {
		t.Fatalf("a member at version 1 was sent %v, want version 2", got)
	}

	// Version 3, signed by members of version 2 (the newcomer among
	// them), submitted at member 1.
	v3 := propose(t, v2, func(b *membership.Body) { b.Threshold = 4 }, ids[1], ids[2], ids[5])
	if err := ms[1].svc.Submit(context.Background(), v3); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*member{ms[0], ms[1], ms[2], m5} {
		waitApplied(t, m, 3)
		wantCurrent(t, m, v3)
	}

	// Member 4 comes back holding version 1: it is handed versions 2 and
	// 3 on connect, in order.
	m4 := start(t, ids[4], v1)
	connect(t, m4, ms[2])
	waitApplied(t, m4, 2)
	waitApplied(t, m4, 3)
	wantCurrent(t, m4, v3)
	if saved, err := membership.ReadFile(m4.path); err != nil || saved.Version() != 3 {
		t.Fatalf("member 4 persisted %v, %v", saved, err)
	}
}
