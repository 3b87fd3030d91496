package gossip_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/encoding/protodelim"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip/pb"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// rawHost connects a bare libp2p host with id's key to m.
func rawHost(t *testing.T, id tu.Identity, m *member) host.Host {
	t.Helper()
	h := tu.RawHost(t, id.Key, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := h.Connect(ctx, tu.AddrInfo(m.node)); err != nil {
		t.Fatal(err)
	}
	return h
}

// hello opens a membership stream from h to m and writes a Hello naming
// version and hash, then frames. The caller closes the stream.
func hello(t *testing.T, h host.Host, m *member, version uint64, hash []byte, frames ...*pb.Frame) network.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	st, err := h.NewStream(ctx, m.id.ID, gossip.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(st)
	all := append([]*pb.Frame{{Kind: &pb.Frame_Hello{Hello: &pb.Hello{Version: version, Hash: hash}}}}, frames...)
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

// docFrame is d as a document frame.
func docFrame(t *testing.T, d *membership.Document) *pb.Frame {
	t.Helper()
	data, err := d.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return &pb.Frame{Kind: &pb.Frame_Document{Document: data}}
}

// readAll reads st until its end (or reset), and returns the documents in
// it after the node's Hello; ran is false if the node sent no Hello (it
// refused the session).
func readAll(t *testing.T, st network.Stream) (docs []*membership.Document, ran bool) {
	t.Helper()
	br := bufio.NewReader(st)
	for i := 0; i < 64; i++ {
		var f pb.Frame
		if err := (protodelim.UnmarshalOptions{MaxSize: gossip.MaxFrameSize}).UnmarshalFrom(br, &f); err != nil {
			return docs, ran
		}
		ran = ran || f.GetHello() != nil
		if data := f.GetDocument(); data != nil {
			d, err := membership.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, d)
		}
	}
	t.Fatal("more than 64 frames")
	return nil, false
}

// session runs one session from h: a Hello for (version, hash), frames,
// the close of its write side; it returns what m sent once m is done with
// the session (m must come from startTracked), so that the next one is not
// refused as busy.
func session(t *testing.T, h host.Host, m *member, version uint64, hash []byte, frames ...*pb.Frame) []*membership.Document {
	t.Helper()
	st := hello(t, h, m, version, hash, frames...)
	_ = st.CloseWrite() // fails if the node already reset the stream
	docs, ran := readAll(t, st)
	st.Close()
	if !ran {
		t.Fatal("session refused")
	}
	select {
	case <-m.ended:
	case <-time.After(tu.Timeout):
		t.Fatalf("session not over within %s", tu.Timeout)
	}
	return docs
}

// startTracked is start for a node whose sessions session waits for.
func startTracked(t *testing.T, id tu.Identity, doc *membership.Document, history ...*membership.Document) *member {
	t.Helper()
	ended := make(chan peer.ID, 16)
	m := startWith(t, id, doc, func(c gossip.Config) gossip.Config {
		c.History = history
		return gossip.WithInboundDone(c, func(p peer.ID) { ended <- p })
	})
	m.ended = ended
	return m
}

// nextBefore waits for the next event of type T that match accepts, and
// fails if an event that bad accepts comes first.
func nextBefore[T gossip.Event](t *testing.T, m *member, match func(T) bool, bad func(gossip.Event) bool) T {
	t.Helper()
	deadline := time.NewTimer(tu.Timeout)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-m.svc.Events():
			if !ok {
				t.Fatal("events closed")
			}
			if e, ok := ev.(T); ok && match(e) {
				return e
			}
			if bad(ev) {
				t.Fatalf("unexpected event %T %+v", ev, ev)
			}
		case <-deadline.C:
			var zero T
			t.Fatalf("no %T within %s", zero, tu.Timeout)
		}
	}
}

func isConflict(ev gossip.Event) bool { _, ok := ev.(gossip.Conflict); return ok }

func randomHash(t *testing.T) []byte {
	h := make([]byte, 32)
	if _, err := rand.Read(h); err != nil {
		t.Fatal(err)
	}
	return h
}

// A member whose Hello names another hash for a version the node holds,
// and which does not send that document, claimed a fork it cannot show:
// no Conflict, and it is charged. The node sent its own document.
func TestForkClaimWithoutDocumentCharged(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	ma := startTracked(t, a, v1)
	h := rawHost(t, b, ma)
	got := session(t, h, ma, 1, randomHash(t))
	if len(got) != 1 || got[0].Hash() != v1.Hash() {
		t.Fatalf("node sent %v, want its version 1", got)
	}
	r := nextBefore(t, ma, func(r gossip.Rejected) bool { return r.From == b.ID }, isConflict)
	if r.Reason != gossip.ReasonUnproven || !r.Charged || r.Version != 1 {
		t.Fatalf("rejected %+v", r)
	}
	if c := nextCharge(t, ma); c.peer != b.ID || c.reason != ratelimit.ProtocolViolation {
		t.Fatalf("charge %+v", c)
	}
	if n := rejectedMetric(t, ma.reg, gossip.ReasonUnproven); n != 1 {
		t.Fatalf("unproven_fork metric %v", n)
	}
}

// A claim whose session is cut short before the document comes (a reset:
// what an honest member's connection closed with bytes unread gives) is
// not charged: reported as a fork not checked.
func TestForkClaimCutShortNotCharged(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	ma := startTracked(t, a, v1)
	h := rawHost(t, b, ma)
	st := hello(t, h, ma, 1, randomHash(t))
	// The node's Hello and document, up to its side's end: it now waits
	// for ours.
	if got, _ := readAll(t, st); len(got) != 1 || got[0].Hash() != v1.Hash() {
		t.Fatalf("node sent %v, want its version 1", got)
	}
	st.Reset()
	r := nextBefore(t, ma, func(r gossip.Rejected) bool { return r.From == b.ID }, isConflict)
	if r.Reason != gossip.ReasonForkUnchecked || r.Charged || r.Version != 1 {
		t.Fatalf("rejected %+v", r)
	}
	select {
	case c := <-ma.charges:
		t.Fatalf("charged %+v", c)
	default:
	}
}

// A member backing its claim with a document that does not verify against
// the version before (too few signatures), or that is not the one its
// Hello named, is charged and no fork is reported.
func TestForkClaimWithBadDocumentCharged(t *testing.T) {
	a, b, c := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 2, a, b, c)
	v2 := propose(t, v1, nil, a, b)
	unsigned := propose(t, v1, func(body *membership.Body) { body.Threshold = 1 }, b) // 1 of 2
	signed := propose(t, v1, func(body *membership.Body) { body.Threshold = 3 }, b, c)
	for name, tc := range map[string]struct {
		hash   []byte
		doc    *membership.Document
		reason gossip.Reason
		charge ratelimit.Reason
	}{
		"threshold":       {hashBytes(unsigned), unsigned, gossip.ReasonThreshold, ratelimit.ProtocolViolation},
		"not the hello's": {randomHash(t), signed, gossip.ReasonMalformed, ratelimit.MalformedMessage},
	} {
		t.Run(name, func(t *testing.T) {
			ma := startTracked(t, a, v2, v1)
			h := rawHost(t, b, ma)
			session(t, h, ma, 2, tc.hash, docFrame(t, tc.doc))
			r := nextBefore(t, ma, func(r gossip.Rejected) bool { return r.From == b.ID }, isConflict)
			if r.Reason != tc.reason || !r.Charged {
				t.Fatalf("rejected %+v", r)
			}
			if ch := nextCharge(t, ma); ch.peer != b.ID || ch.reason != tc.charge {
				t.Fatalf("charge %+v", ch)
			}
			wantCurrent(t, ma, v2)
		})
	}
}

// A member that holds another valid version 2 (a threshold of members
// signed twice) and sends it is a fork, reported once however many
// sessions show it again, with its document. The node sends its own
// document in the first exchange only: the next sessions within 10
// minutes name the same fork, and get nothing (not charged).
func TestForkReportedOnce(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1, v2a, v2b := forked(t, a, b)
	ma := startTracked(t, a, v2a, v1)
	h := rawHost(t, b, ma)
	for i := 0; i < 3; i++ {
		got := session(t, h, ma, 2, hashBytes(v2b), docFrame(t, v2b))
		if want := max(0, 1-i); len(got) != want || want == 1 && got[0].Hash() != v2a.Hash() {
			t.Fatalf("session %d: node sent %v, want %d documents (its version 2 the first time)", i, got, want)
		}
	}
	c := tu.Next[gossip.Conflict](t, ma.svc.Events())
	if c.Peer != b.ID || c.Version != 2 || c.Hash != v2a.Hash() || c.PeerHash != v2b.Hash() ||
		c.PeerDocument == nil || c.PeerDocument.Hash() != v2b.Hash() {
		t.Fatalf("conflict %+v", c)
	}
	// The node ended each session after dealing with it; a malformed
	// frame now marks the end of what the three sessions produced.
	session(t, h, ma, 2, hashBytes(v2a), &pb.Frame{Kind: &pb.Frame_Document{Document: []byte("x")}})
	nextBefore(t, ma, func(r gossip.Rejected) bool { return r.From == b.ID && r.Reason == gossip.ReasonMalformed },
		func(ev gossip.Event) bool { _, ok := ev.(gossip.Rejected); return isConflict(ev) || ok })
	wantCurrent(t, ma, v2a)
}

// The fork is found, and shown both ways, when the members are at
// different versions: the one ahead holds another version 2 than the one
// behind.
func TestConflictAcrossVersions(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	v2a := propose(t, v1, nil, a)
	v3a := propose(t, v2a, nil, a)
	v2b := propose(t, v1, func(body *membership.Body) { body.Threshold = 2 }, b)
	ma := start(t, a, v3a, v1, v2a)
	mb := start(t, b, v2b, v1)
	connect(t, mb, ma)
	for _, m := range []*member{ma, mb} {
		c := tu.Next[gossip.Conflict](t, m.svc.Events())
		if c.Version != 2 || c.Hash == c.PeerHash || c.PeerDocument.Hash() != c.PeerHash {
			t.Fatalf("conflict %+v", c)
		}
	}
	wantCurrent(t, ma, v3a)
	wantCurrent(t, mb, v2b)
}

// A member whose Hello names a newer version it cannot hand over gets one
// Behind, not one per session: the same version again, or another within
// the minute, reports nothing.
func TestBehindClaimNotRepeated(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	ma := startTracked(t, a, v1)
	h := rawHost(t, b, ma)
	for _, v := range []uint64{99, 99, 100} {
		session(t, h, ma, v, randomHash(t))
	}
	bh := tu.Next[gossip.Behind](t, ma.svc.Events())
	if bh.Peer != b.ID || bh.PeerVersion != 99 || bh.Version != 1 {
		t.Fatalf("behind %+v", bh)
	}
	session(t, h, ma, 1, hashBytes(v1), &pb.Frame{Kind: &pb.Frame_Document{Document: []byte("x")}})
	nextBefore(t, ma, func(r gossip.Rejected) bool { return r.From == b.ID && r.Reason == gossip.ReasonMalformed },
		func(ev gossip.Event) bool { _, ok := ev.(gossip.Behind); return ok })
}

// A member opening sessions while one of its own runs: the first refused
// is free (an honest peer's next session can overtake the end of its
// last), the next are charged.
func TestBusySessionsCharged(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	ma := start(t, a, v1)
	h := rawHost(t, b, ma)
	first := hello(t, h, ma, 1, hashBytes(v1))
	defer first.Reset()
	// The node writes its Hello once the session is running.
	var f pb.Frame
	if err := (protodelim.UnmarshalOptions{MaxSize: gossip.MaxFrameSize}).UnmarshalFrom(bufio.NewReader(first), &f); err != nil || f.GetHello() == nil {
		t.Fatalf("node's hello: %v %v", &f, err)
	}
	for i, want := range []bool{false, true, true} {
		st := hello(t, h, ma, 1, hashBytes(v1))
		_, _ = io.ReadAll(st) // until the node's reset
		st.Close()
		r := waitRejected(t, ma, b.ID)
		if r.Reason != gossip.ReasonBusy || r.Charged != want {
			t.Fatalf("refusal %d: %+v, want charged %v", i, r, want)
		}
		if want {
			if c := nextCharge(t, ma); c.peer != b.ID || c.reason != ratelimit.ProtocolViolation {
				t.Fatalf("charge %+v", c)
			}
		}
	}
	select {
	case c := <-ma.charges:
		t.Fatalf("extra charge %+v", c)
	default:
	}
}

// A fork of a version the node cannot check (version 1 here: nothing
// before it) is neither reported nor charged, and the session goes on as
// the protocol says: the node behind answers with its own document, so an
// honest peer ahead does not take it for a claim not shown.
func TestUncheckableForkAnswered(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	g1a := genesis(t, 1, a, b)
	g1b := genesis(t, 2, a, b)
	ma := startTracked(t, a, g1a)
	h := rawHost(t, b, ma)
	// b, ahead at version 2 of another history, sends its version 1.
	got := session(t, h, ma, 2, randomHash(t), docFrame(t, g1b))
	if len(got) != 1 || got[0].Hash() != g1a.Hash() {
		t.Fatalf("node sent %v, want its version 1", got)
	}
	// Both at version 1, on a node that has not exchanged this fork yet.
	mc := startTracked(t, a, g1a)
	hc := rawHost(t, b, mc)
	got = session(t, hc, mc, 1, hashBytes(g1b), docFrame(t, g1b))
	if len(got) != 1 || got[0].Hash() != g1a.Hash() {
		t.Fatalf("node sent %v, want its version 1", got)
	}
	bad := &pb.Frame{Kind: &pb.Frame_Document{Document: []byte("x")}}
	session(t, h, ma, 1, hashBytes(g1a), bad)
	wantUncheckedThenMalformed(t, ma, b.ID, 1)
	session(t, hc, mc, 1, hashBytes(g1a), bad)
	wantUncheckedThenMalformed(t, mc, b.ID, 1)
}

// wantUncheckedThenMalformed waits for the malformed frame a test sent
// last, and fails unless exactly one fork_unchecked Rejected (not charged)
// for version v came before it, with no Conflict nor other refusal, and
// the only charge is the malformed frame's.
func wantUncheckedThenMalformed(t *testing.T, m *member, from peer.ID, v uint64) {
	t.Helper()
	unchecked := 0
	nextBefore(t, m, func(r gossip.Rejected) bool { return r.From == from && r.Reason == gossip.ReasonMalformed },
		func(ev gossip.Event) bool {
			r, ok := ev.(gossip.Rejected)
			if ok && r.Reason == gossip.ReasonForkUnchecked && !r.Charged && r.Version == v {
				unchecked++
				return unchecked > 1
			}
			return isConflict(ev) || ok && r.Reason != gossip.ReasonBusy
		})
	if unchecked != 1 {
		t.Fatalf("%d fork_unchecked events, want 1", unchecked)
	}
	if c := nextCharge(t, m); c.reason != ratelimit.MalformedMessage {
		t.Fatalf("charge %+v, want only the malformed frame's", c)
	}
	if n := rejectedMetric(t, m.reg, gossip.ReasonForkUnchecked); n != 1 {
		t.Fatalf("fork_unchecked metric %v", n)
	}
}

// Histories that split before the version in the Hellos: the peer's
// document links to another version before it than the node's. An honest
// peer sends that; it cannot be checked, so it is neither a fork reported
// nor charged, and the node still sends its own.
func TestForkSplitEarlierNotCharged(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	v2a := propose(t, v1, nil, a)
	v3a := propose(t, v2a, nil, a)
	v2b := propose(t, v1, func(body *membership.Body) { body.Threshold = 2 }, b)
	v3b := propose(t, v2b, nil, a, b)
	ma := startTracked(t, a, v3a, v1, v2a)
	h := rawHost(t, b, ma)
	got := session(t, h, ma, 3, hashBytes(v3b), docFrame(t, v3b))
	if len(got) != 1 || got[0].Hash() != v3a.Hash() {
		t.Fatalf("node sent %v, want its version 3", got)
	}
	session(t, h, ma, 3, hashBytes(v3a), &pb.Frame{Kind: &pb.Frame_Document{Document: []byte("x")}})
	wantUncheckedThenMalformed(t, ma, b.ID, 3)
}

// A member can make up, for a version the node holds, a tiny document the
// node cannot check (version 1, which has nothing before it; or one linking
// to a made-up previous version), and name it in its Hello: the node
// answers with its own document (up to 1 MiB) the first time only. Within
// 10 minutes the same claim gets nothing, free (an honest peer names its
// document every session), and a claim of another document for the same
// version gets nothing and is charged (no honest member holds two).
func TestForkClaimRepeatedNotAnswered(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	v2 := propose(t, v1, nil, a)
	v3 := propose(t, v2, nil, a)
	other := genesis(t, 2, a, b)
	made := 0
	fake := func(prev *membership.Document) *membership.Document {
		t.Helper()
		made++
		b := membership.Body{Version: 1, Threshold: 1, Members: v1.Body().Members, Expires: time.Unix(int64(4e9+made), 0)}
		if prev != nil {
			b = prev.Next()
			b.Prev = membership.Hash(randomHash(t))
		}
		d, err := membership.NewDocument(b) // no signature
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for name, tc := range map[string]struct {
		cur     *membership.Document
		history []*membership.Document
		hello   uint64 // the peer's Hello; the fork is at cur's version
		doc     func() *membership.Document
	}{
		"version 1":     {v1, nil, 1, func() *membership.Document { return fake(nil) }},
		"split earlier": {v3, []*membership.Document{v1, v2}, 3, func() *membership.Document { return fake(v2) }},
		"peer ahead":    {v1, nil, 5, func() *membership.Document { return fake(nil) }},
		"other genesis": {v1, nil, 1, func() *membership.Document { return other }},
	} {
		t.Run(name, func(t *testing.T) {
			ma := startTracked(t, a, tc.cur, tc.history...)
			h := rawHost(t, b, ma)
			claim := tc.doc()
			hash := func(d *membership.Document) []byte {
				if tc.hello != tc.cur.Version() {
					return randomHash(t) // the peer ahead names its own version
				}
				return hashBytes(d)
			}
			for i := 0; i < 3; i++ {
				got := session(t, h, ma, tc.hello, hash(claim), docFrame(t, claim))
				if want := max(0, 1-i); len(got) != want {
					t.Fatalf("session %d: node sent %d documents, want %d", i, len(got), want)
				}
			}
			r := waitRejected(t, ma, b.ID)
			if r.Reason != gossip.ReasonForkUnchecked || r.Charged || r.Version != tc.cur.Version() {
				t.Fatalf("rejected %+v", r)
			}
			// Another document of the same version.
			second := tc.doc()
			if second == other {
				second = fake(nil)
			}
			// The node resets the stream: its Hello may be lost.
			st := hello(t, h, ma, tc.hello, hash(second), docFrame(t, second))
			_ = st.CloseWrite()
			got, _ := readAll(t, st)
			st.Close()
			if len(got) != 0 {
				t.Fatalf("node sent %d documents for a second claim", len(got))
			}
			r = waitRejected(t, ma, b.ID)
			if r.Reason != gossip.ReasonUnproven || !r.Charged {
				t.Fatalf("rejected %+v", r)
			}
			if c := nextCharge(t, ma); c.peer != b.ID || c.reason != ratelimit.ProtocolViolation {
				t.Fatalf("charge %+v", c)
			}
			select {
			case c := <-ma.charges:
				t.Fatalf("extra charge %+v", c)
			default:
			}
			if n := rejectedMetric(t, ma.reg, gossip.ReasonForkUnchecked); n != 1 {
				t.Fatalf("fork_unchecked metric %v", n)
			}
		})
	}
}

// A version applied during a session, after this node's Hello went out,
// is not taken for a fork: the peer answered the Hello, and sent what
// follows it. The node sends nothing back (the peer, ahead, closed its
// side and would take a document as out of order), and the version sent
// is skipped as stale, not charged.
func TestForkNotAfterHello(t *testing.T) {
	a, b, c := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b, c)
	v2a := propose(t, v1, nil, a)
	v2b := propose(t, v1, func(body *membership.Body) { body.Threshold = 2 }, b)
	ma := startTracked(t, a, v1)
	h := rawHost(t, b, ma)
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	st, err := h.NewStream(ctx, a.ID, gossip.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	br := bufio.NewReader(st)
	var f pb.Frame
	if err := (protodelim.UnmarshalOptions{MaxSize: gossip.MaxFrameSize}).UnmarshalFrom(br, &f); err != nil || f.GetHello().GetVersion() != 1 {
		t.Fatalf("node's hello: %v %v", &f, err)
	}
	// The node applies version 2 from elsewhere, then reads b's Hello.
	if err := ma.svc.Submit(ctx, v2a); err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(st)
	for _, f := range []*pb.Frame{{Kind: &pb.Frame_Hello{Hello: &pb.Hello{Version: 2, Hash: hashBytes(v2b)}}}, docFrame(t, v2b)} {
		if _, err := protodelim.MarshalTo(bw, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var docs int
	for i := 0; ; i++ {
		if i > 64 {
			t.Fatal("more than 64 frames")
		}
		var f pb.Frame
		if err := (protodelim.UnmarshalOptions{MaxSize: gossip.MaxFrameSize}).UnmarshalFrom(br, &f); err != nil {
			break
		}
		if f.GetDocument() != nil {
			docs++
		}
	}
	if docs != 0 {
		t.Fatalf("node sent %d documents, want none", docs)
	}
	r := nextBefore(t, ma, func(r gossip.Rejected) bool { return r.From == b.ID }, isConflict)
	if r.Reason != gossip.ReasonStale || r.Charged || r.Version != 2 {
		t.Fatalf("rejected %+v", r)
	}
	wantCurrent(t, ma, v2a)
}

// Two honest nodes holding another version 2 each, reconnecting: the
// first session shows the fork both ways, the next ones (within 10
// minutes) send no document, and neither charges the other.
func TestForkRepeatedHonestNotCharged(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1, v2a, v2b := forked(t, a, b)
	ma := startTracked(t, a, v2a, v1)
	mb := start(t, b, v2b, v1)
	for i := 0; i < 3; i++ {
		connect(t, mb, ma)
		select {
		case <-ma.ended:
		case <-time.After(tu.Timeout):
			t.Fatalf("session %d not over within %s", i, tu.Timeout)
		}
		if i == 0 {
			for _, m := range []*member{ma, mb} {
				if c := tu.Next[gossip.Conflict](t, m.svc.Events()); c.Version != 2 {
					t.Fatalf("conflict %+v", c)
				}
			}
		}
		mb.node.Sender() <- p2p.DisconnectFrom{Peer: a.ID}
		tu.NextMatch(t, mb.node.Receiver(), func(d p2p.Disconnected) bool { return d.Peer == a.ID })
	}
	// mb runs its sessions with ma one after the other: the first two
	// are over, and ma's three.
	for _, m := range []*member{ma, mb} {
		select {
		case c := <-m.charges:
			t.Fatalf("charge %+v", c)
		default:
		}
	}
}

// A fork the node cannot check because it keeps nothing before that
// version (version 1 here) is logged at warn, with both hashes, as one
// whose histories split earlier is (docs/membership.md, Forks).
func TestUncheckedForkLoggedAtWarn(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	g1a := genesis(t, 1, a, b)
	g1b := genesis(t, 2, a, b)
	core, logs := observer.New(zapcore.WarnLevel)
	ended := make(chan peer.ID, 16)
	ma := startWith(t, a, g1a, func(c gossip.Config) gossip.Config {
		c.Logger = zap.New(core)
		return gossip.WithInboundDone(c, func(p peer.ID) { ended <- p })
	})
	ma.ended = ended
	h := rawHost(t, b, ma)
	session(t, h, ma, 1, hashBytes(g1b), docFrame(t, g1b))
	if r := waitRejected(t, ma, b.ID); r.Reason != gossip.ReasonForkUnchecked {
		t.Fatalf("rejected %+v", r)
	}
	for _, e := range logs.All() {
		if e.ContextMap()["reason"] == string(gossip.ReasonForkUnchecked) {
			for _, want := range []string{g1a.Hash().String(), g1b.Hash().String()} {
				if err, _ := e.ContextMap()["error"].(string); !strings.Contains(err, want) {
					t.Fatalf("log line %q %v lacks hash %s", e.Message, e.ContextMap(), want)
				}
			}
			return
		}
	}
	t.Fatalf("no warn line for the fork: %v", logs.All())
}

// A fork exchange that went wrong (here the peer's document never came;
// as well a connection lost under it) is run again once claimWindow has
// passed since it ran, however often the peer connects meanwhile: the
// sessions naming it again no longer extend the memory of it. They did,
// so a peer connecting every few minutes never had its document read, and
// a real fork behind an exchange cut short went unreported.
func TestForkReportedAfterAnExchangeWentWrong(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1, v2a, v2b := forked(t, a, b)
	ma := startTracked(t, a, v2a, v1)
	var skew atomic.Int64
	gossip.SetClock(ma.svc, func() time.Time { return time.Now().Add(time.Duration(skew.Load())) })
	h := rawHost(t, b, ma)

	if got := session(t, h, ma, 2, hashBytes(v2b)); len(got) != 1 || got[0].Hash() != v2a.Hash() {
		t.Fatalf("first session: node sent %v, want its version 2", got)
	}
	nextBefore(t, ma, func(r gossip.Rejected) bool { return r.From == b.ID && r.Reason == gossip.ReasonUnproven }, isConflict)

	skew.Add(int64(6 * time.Minute))
	if got := session(t, h, ma, 2, hashBytes(v2b), docFrame(t, v2b)); len(got) != 0 {
		t.Fatalf("6 minutes later: node sent %v, want nothing", got)
	}
	skew.Add(int64(5 * time.Minute)) // 11 minutes after the exchange, 5 after the last session
	if got := session(t, h, ma, 2, hashBytes(v2b), docFrame(t, v2b)); len(got) != 1 || got[0].Hash() != v2a.Hash() {
		t.Fatalf("11 minutes later: node sent %v, want its version 2", got)
	}
	c := tu.Next[gossip.Conflict](t, ma.svc.Events())
	if c.Peer != b.ID || c.Version != 2 || c.PeerHash != v2b.Hash() {
		t.Fatalf("conflict %+v", c)
	}
}

// forked makes a fork of version 2 between a and b, members of version 1
// (threshold 1): each signed its own version 2, both valid against v1.
func forked(t *testing.T, a, b tu.Identity) (v1, v2a, v2b *membership.Document) {
	t.Helper()
	v1 = genesis(t, 1, a, b)
	v2a = propose(t, v1, nil, a)
	v2b = propose(t, v1, func(body *membership.Body) { body.Threshold = 2 }, b)
	return v1, v2a, v2b
}
