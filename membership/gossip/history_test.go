package gossip_test

import (
	"testing"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip"
)

// chain returns versions 1..n of a two-member, threshold-1 membership.
func chain(t *testing.T, n int, a, b tu.Identity) []*membership.Document {
	t.Helper()
	docs := []*membership.Document{genesis(t, 1, a, b)}
	for len(docs) < n {
		docs = append(docs, propose(t, docs[len(docs)-1], nil, a))
	}
	return docs
}

// A node installed with a version and the ones before it hands them all to
// a member that is behind.
func TestHistoryFromConfig(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	docs := chain(t, 3, a, b)
	ma := start(t, a, docs[2], docs[1])
	mb := start(t, b, docs[0])
	connect(t, mb, ma)
	waitApplied(t, mb, 2)
	waitApplied(t, mb, 3)
	wantCurrent(t, mb, docs[2])
}

// A member further behind than the versions a node keeps is told so, and
// keeps what it has.
func TestBehindBeyondHistory(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	docs := chain(t, 3, a, b)
	ma := start(t, a, docs[2]) // keeps version 3 only
	mb := start(t, b, docs[0])
	connect(t, mb, ma)
	bh := tu.Next[gossip.Behind](t, mb.svc.Events())
	if bh.Peer != a.ID || bh.PeerVersion != 3 || bh.Version != 1 {
		t.Fatalf("behind %+v", bh)
	}
	wantCurrent(t, mb, docs[0])
}

// Two members holding different documents under one version number report
// the fork and exchange nothing.
func TestConflict(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	v2a := propose(t, v1, nil, a)
	v2b := propose(t, v1, func(body *membership.Body) { body.Threshold = 2 }, b)
	ma := start(t, a, v2a, v1)
	mb := start(t, b, v2b, v1)
	connect(t, mb, ma)
	for _, m := range []*member{ma, mb} {
		c := tu.Next[gossip.Conflict](t, m.svc.Events())
		if c.Version != 2 || c.Hash == c.PeerHash {
			t.Fatalf("conflict %+v", c)
		}
	}
	wantCurrent(t, ma, v2a)
	wantCurrent(t, mb, v2b)
}
