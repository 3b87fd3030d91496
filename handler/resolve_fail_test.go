package handler_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// failingResolver never finds anything and reports each call.
type failingResolver struct{ calls chan struct{} }

func (f *failingResolver) Resolve(ctx context.Context, p peer.ID) ([]ma.Multiaddr, error) {
	select {
	case f.calls <- struct{}{}:
	default:
	}
	return nil, errors.New("not found")
}

// An exchange sent once on a connection the peer opened (so without an
// address), whose connection then closes, is resent: with no address known
// the Resolver is asked, and when it finds nothing the exchange must end
// (or at least run out of attempts), not ask the Resolver again after every
// backoff for ever with no Outcome.
func TestFailedResolveWithoutAddressEnds(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	r := &failingResolver{calls: make(chan struct{}, 1)}
	a := newHandler(t, ia, list, handler.WithResolver(r))
	b := newHandler(t, ib, list)

	// b dials a: a's handler knows b connected, but no address for it.
	if _, err := b.Request(a.PeerID(), addr(a), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	tu.Next[*handler.Request](t, a.Events()) // not answered: the connection stays

	id, err := a.Request(b.PeerID(), nil, []byte("q"))
	if err != nil {
		t.Fatal(err)
	}
	if !a.WaitState(id, handler.StateAwaitReply, tu.Timeout) {
		t.Fatal("request not acked")
	}
	b.Close() // a's request is lost with the connection: a resends it

	deadline := time.NewTimer(tu.Timeout)
	defer deadline.Stop()
	calls := 0
	for {
		select {
		case ev := <-a.Outcomes():
			if o, ok := ev.(*handler.Outcome); ok && o.Exchange == id {
				expect(t, o, false, handler.ReasonDialFailed)
				return
			}
		case <-r.calls:
			calls++
			if calls > 2*handler.DefaultMaxAttempts {
				t.Fatalf("the Resolver was asked %d times and the exchange has not ended", calls)
			}
		case <-deadline.C:
			t.Fatalf("no outcome within %s (%d lookups)", tu.Timeout, calls)
		}
	}
}
