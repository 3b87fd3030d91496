package gossip_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip/pb"
)

// heldVerify is a verification that the test holds: its first call
// reports on entered and waits for release before it runs
// membership.VerifyNext; later calls run at once.
type heldVerify struct {
	calls   atomic.Int32
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newHeldVerify() *heldVerify {
	return &heldVerify{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (h *heldVerify) verify(cur, next *membership.Document, now time.Time) (membership.Report, error) {
	if h.calls.Add(1) == 1 {
		h.entered <- struct{}{}
		<-h.release
	}
	return membership.VerifyNext(cur, next, now)
}

func (h *heldVerify) unblock() { h.once.Do(func() { close(h.release) }) }

func (h *heldVerify) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(tu.Timeout):
		t.Fatalf("no verification started within %s", tu.Timeout)
	}
}

// A member sending a document must not hold up Current, which admission
// and every session read, for the time its signatures take to check.
func TestCurrentNotBlockedByVerification(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	v2 := propose(t, v1, nil, b)
	h := newHeldVerify()
	ma := startWith(t, a, v1, func(c gossip.Config) gossip.Config { return gossip.WithVerify(c, h.verify) })
	// Runs before the service's Close, which waits for the held session.
	t.Cleanup(h.unblock)
	data, err := v2.Encode()
	if err != nil {
		t.Fatal(err)
	}
	rawSession(t, b, ma, v1, &pb.Frame{Kind: &pb.Frame_Document{Document: data}})
	h.waitEntered(t)

	got := make(chan *membership.Document, 1)
	go func() { got <- ma.svc.Current() }()
	select {
	case d := <-got:
		if d.Hash() != v1.Hash() {
			t.Fatalf("Current = %s during the verification of version 2, want %s", d, v1)
		}
	case <-time.After(tu.Timeout):
		t.Fatalf("Current blocked for %s while a verification was in progress", tu.Timeout)
	}
	h.unblock()
	waitApplied(t, ma, 2)
	wantCurrent(t, ma, v2)
}

// Two versions verified at once, each against the version then current:
// the one whose base was replaced meanwhile must not be installed over the
// newer version. No Path, so that SaveNewer, which refuses to go back on
// disk, does not hide an in-memory rollback.
func TestConcurrentVerificationNeverGoesBack(t *testing.T) {
	a, b, c, d := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	v1 := genesis(t, 1, a, b)
	addC := func(body *membership.Body) { body.Members = append(body.Members, membership.Member{ID: c.ID}) }
	v2 := propose(t, v1, addC, b)
	v2other := propose(t, v1, nil, b) // another valid version 2: a fork
	v3 := propose(t, v2, func(body *membership.Body) {
		body.Members = append(body.Members, membership.Member{ID: d.ID})
	}, b)
	h := newHeldVerify()
	ma := startWith(t, a, v1, func(cfg gossip.Config) gossip.Config {
		cfg.Path = ""
		return gossip.WithVerify(cfg, h.verify)
	})
	t.Cleanup(h.unblock)
	ctx := context.Background()

	held := make(chan error, 1)
	go func() { held <- ma.svc.Submit(ctx, v2other) }()
	h.waitEntered(t)
	if err := ma.svc.Submit(ctx, v2); err != nil {
		t.Fatalf("submit version 2: %v", err)
	}
	if err := ma.svc.Submit(ctx, v3); err != nil {
		t.Fatalf("submit version 3: %v", err)
	}
	h.unblock()
	select {
	case err := <-held:
		if !errors.Is(err, membership.ErrStale) || errors.Is(err, gossip.ErrPersist) {
			t.Fatalf("version 2 verified against version 1, applied after version 3: %v, want ErrStale", err)
		}
	case <-time.After(tu.Timeout):
		t.Fatalf("the held submission did not return within %s", tu.Timeout)
	}
	wantCurrent(t, ma, v3)
	if !ma.list.Contains(c.ID) || !ma.list.Contains(d.ID) {
		t.Fatalf("the allowlist lost members of version 3")
	}
	// The history still links: a member at version 1 gets 2 and 3.
	if got := inject(t, b.Key, ma, v1); len(got) != 2 || got[0].Hash() != v2.Hash() || got[1].Hash() != v3.Hash() {
		t.Fatalf("a member at version 1 was sent %v, want versions 2 and 3", got)
	}
}
