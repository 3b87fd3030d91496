package handler_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// fakeResolver answers from a script, one answer per call, repeating the
// last one.
type fakeResolver struct {
	mu      sync.Mutex
	answers [][]ma.Multiaddr
	err     error
	errFrom int // calls from this one on fail with err; 0: all of them
	calls   int
}

func (f *fakeResolver) Resolve(ctx context.Context, p peer.ID) ([]ma.Multiaddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil && f.calls >= f.errFrom {
		return nil, f.err
	}
	return f.answers[min(f.calls, len(f.answers))-1], nil
}

func (f *fakeResolver) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// resolverPair starts a dialer using r and an echoing responder.
func resolverPair(t *testing.T, r handler.Resolver) (a, b *handler.Handler) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a = newHandler(t, ia, list, handler.WithResolver(r))
	b = newHandler(t, ib, list)
	echo(t, b)
	return a, b
}

func TestResolverFindsAddress(t *testing.T) {
	r := &fakeResolver{}
	a, b := resolverPair(t, r)
	r.answers = [][]ma.Multiaddr{{addr(b)}}
	id, _ := a.Request(b.PeerID(), nil, []byte("q"))
	expect(t, outcome(t, a, id), true, handler.ReasonOK)
	if r.count() != 1 {
		t.Fatalf("%d lookups", r.count())
	}
	// The address is cached: the next exchange, on a new connection, needs
	// no lookup.
	id, _ = a.Request(b.PeerID(), nil, []byte("q"))
	expect(t, outcome(t, a, id), true, handler.ReasonOK)
	if r.count() != 1 {
		t.Fatalf("%d lookups", r.count())
	}
}

func TestResolverFails(t *testing.T) {
	r := &fakeResolver{err: errors.New("not found")}
	a, b := resolverPair(t, r)
	id, _ := a.Request(b.PeerID(), nil, []byte("q"))
	o := outcome(t, a, id)
	expect(t, o, false, handler.ReasonDialFailed)
	if o.Stage != handler.StateResolving || o.Attempts != 0 {
		t.Fatalf("outcome %+v", o)
	}
}

// A dial to a stale address is followed by one more lookup.
func TestResolveAgainAfterDialFailure(t *testing.T) {
	r := &fakeResolver{}
	a, b := resolverPair(t, r)
	gone := newHandler(t, tu.NewIdentity(t), tu.Allowlist(t))
	stale, _ := peer.SplitAddr(addr(gone))
	gone.Close()
	r.answers = [][]ma.Multiaddr{{stale}, {addr(b)}}
	id, _ := a.Request(b.PeerID(), nil, []byte("q"))
	o := outcome(t, a, id)
	expect(t, o, true, handler.ReasonOK)
	if r.count() != 2 || o.Attempts != 2 {
		t.Fatalf("%d lookups, outcome %+v", r.count(), o)
	}
}

// A resolver set after the handler started (a DHT on its host) is used.
func TestSetResolver(t *testing.T) {
	a, b := resolverPair(t, nil)
	if err := a.SetResolver(&fakeResolver{answers: [][]ma.Multiaddr{{addr(b)}}}); err != nil {
		t.Fatal(err)
	}
	id, _ := a.Request(b.PeerID(), nil, []byte("q"))
	expect(t, outcome(t, a, id), true, handler.ReasonOK)
}

// When the second lookup fails too, the known address is retried until the
// attempts run out.
func TestResolveAgainFails(t *testing.T) {
	r := &fakeResolver{}
	a, b := resolverPair(t, r)
	gone := newHandler(t, tu.NewIdentity(t), tu.Allowlist(t))
	stale, _ := peer.SplitAddr(addr(gone))
	gone.Close()
	r.answers = [][]ma.Multiaddr{{stale}}
	r.err, r.errFrom = errors.New("lookup failed"), 2
	id, _ := a.Request(b.PeerID(), nil, []byte("q"))
	o := outcome(t, a, id)
	expect(t, o, false, handler.ReasonDialFailed)
	if r.count() != 2 || o.Attempts != handler.DefaultMaxAttempts {
		t.Fatalf("%d lookups, outcome %+v", r.count(), o)
	}
}
