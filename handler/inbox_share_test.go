package handler_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// TestOnePeerHoldsAtMostHalfTheNodeInbox: with a store of 16 MiB (a node
// bound, MaxInboxBytes, of 4 MiB), one peer leaving its messages unhandled
// holds at most half the node's bound, MaxInboxBytesPerPeer's default
// there, and an honest peer still gets several in. The per-peer default
// was 64 MiB whatever the node's bound: one hostile peer within its own
// bound held all of it, and every other peer got one message in at a time.
func TestOnePeerHoldsAtMostHalfTheNodeInbox(t *testing.T) {
	ib, ix, ih := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ib, ix, ih)
	const storeCap = 16 << 20
	s, err := store.Open(t.TempDir(), store.Options{MaxBytes: storeCap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	b := newHandler(t, ib, list, handler.WithStore(s))
	node := b.MaxInboxBytes()
	answerWith(t, b, []byte("ok")) // and never acks a message
	hostile, honest := newRawPeer(t, ix, "127.0.0.1"), newRawPeer(t, ih, "127.0.0.1")
	// Random bytes: the store's tables compress.
	payload := make([]byte, 256<<10)
	rng := rand.NewChaCha8([32]byte{9})
	_, _ = rng.Read(payload)

	// The hostile peer sends until refused: its share, no more.
	taken := 0
	for id := handler.ExchangeID(1); id <= 2*handler.ExchangeID(node/len(payload)); id++ {
		r := hostile.send(b, envelope(hpb.Kind_KIND_MESSAGE, id, payload))
		if r == pb.Reason_BUSY {
			break
		}
		if r != pb.Reason_OK {
			t.Fatalf("the hostile peer's message %d: %v", id, r)
		}
		taken++
	}
	if _, held := b.InboxUse(ix.ID); held > node/2 || taken > node/2/len(payload) {
		t.Fatalf("the hostile peer holds %d bytes (%d messages), want at most half of %d", held, taken, node)
	}
	// The honest peer is not cut down to one message at a time.
	for id := handler.ExchangeID(1); id <= 4; id++ {
		if r := honest.send(b, envelope(hpb.Kind_KIND_MESSAGE, id, payload)); r != pb.Reason_OK {
			t.Fatalf("the honest peer's message %d, with the hostile one holding %d of them: %v", id, taken, r)
		}
	}
	if total := b.InboxTotal(); total > node {
		t.Fatalf("every peer holds %d bytes, want at most %d", total, node)
	}
}

// TestMaxInboxBytesPerPeerConfig: MaxInboxBytesPerPeer defaults to 64 MiB
// when that is at most half of MaxInboxBytes, to half of it otherwise
// (a store of 64 MiB: 8 MiB), and New refuses, naming the
// field, one over MaxInboxBytes (its default applied); as much is taken.
func TestMaxInboxBytesPerPeerConfig(t *testing.T) {
	ib := tu.NewIdentity(t)
	list := tu.Allowlist(t, ib)
	if got := newHandler(t, ib, list).MaxInboxBytesPerPeer(); got != handler.DefaultMaxInboxBytesPerPeer {
		t.Fatalf("MaxInboxBytesPerPeer %d without a store, want %d", got, handler.DefaultMaxInboxBytesPerPeer)
	}
	s, err := store.Open(t.TempDir(), store.Options{MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, c := range []struct {
		perPeer, node int
		store         bool
	}{{16<<20 + 1, 0, true}, {2<<20 + 1, 2 << 20, false}, {handler.DefaultMaxInboxBytes + 1, 0, false}} {
		opts := []handler.Option{func(cfg *handler.Config) { cfg.MaxInboxBytesPerPeer, cfg.MaxInboxBytes = c.perPeer, c.node }}
		if c.store {
			opts = append(opts, handler.WithStore(s))
		}
		h, err := handler.New(nil, ib.Key, list, opts...)
		if err == nil {
			h.Close()
			t.Fatalf("MaxInboxBytesPerPeer %d over MaxInboxBytes %d (store: %v) accepted", c.perPeer, c.node, c.store)
		}
		if !errors.Is(err, handler.ErrInvalidConfig) || !strings.Contains(err.Error(), "MaxInboxBytesPerPeer") {
			t.Fatalf("MaxInboxBytesPerPeer %d (store: %v): %v", c.perPeer, c.store, err)
		}
	}
	if got := newHandler(t, ib, list, handler.WithStore(s)).MaxInboxBytesPerPeer(); got != 8<<20 {
		t.Fatalf("MaxInboxBytesPerPeer %d with a store of 64 MiB, want half of MaxInboxBytes, 8 MiB", got)
	}
	h := newHandler(t, ib, list, handler.WithStore(s), func(cfg *handler.Config) { cfg.MaxInboxBytesPerPeer = 16 << 20 })
	if got := h.MaxInboxBytesPerPeer(); got != 16<<20 {
		t.Fatalf("MaxInboxBytesPerPeer %d, want MaxInboxBytes as set", got)
	}
}

// TestStoredRepliesTrimmedFromTheLargestHolder: past MaxInboxBytes, the
// stored replies dropped are those of the peer holding the most, not the
// oldest whoever's they are: a hostile peer sending fresh requests as fast
// as they are answered, within its own bound, pushed out an honest peer's
// stored reply, and the honest peer's resend (its dialer restarted) got no
// reply. With the per-peer bound at its default (half the node's), and at
// the node's own.
func TestStoredRepliesTrimmedFromTheLargestHolder(t *testing.T) {
	for _, c := range []struct {
		name    string
		perPeer int
	}{{"default", 0}, {"perPeer=node", 6 * 1000}} {
		t.Run(c.name, func(t *testing.T) { storedRepliesOfTheLargestHolder(t, c.perPeer) })
	}
}

func storedRepliesOfTheLargestHolder(t *testing.T, perPeer int) {
	ib, ix, ih := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	const size = 1000
	b := newNode(t, ib, tu.Allowlist(t, ib, ix, ih), handler.WithKeepConnection(true),
		func(c *handler.Config) { c.MaxInboxBytes, c.MaxInboxBytesPerPeer = 6*size, perPeer })
	hostile, honest := newRawPeer(t, ix, "127.0.0.1"), newRawPeer(t, ih, "127.0.0.1")
	reply := func(id handler.ExchangeID) []byte { return bytes.Repeat([]byte{byte(id)}, size) }
	answer := func(r *rawPeer, id handler.ExchangeID) {
		t.Helper()
		if got := r.send(b.h, envelope(hpb.Kind_KIND_REQUEST, id, []byte("q"))); got != pb.Reason_OK {
			t.Fatalf("request %s: %v", id, got)
		}
		req := nextRequest(t, b.h)
		if req.Exchange != id {
			t.Fatalf("request %+v", req)
		}
		if err := b.h.Response(req.From, id, reply(id)); err != nil {
			t.Fatal(err)
		}
		for {
			env := r.next()
			if env.Kind == hpb.Kind_KIND_REPLY && handler.ExchangeID(env.Exchange) == id {
				break
			}
		}
		o := tu.NextMatch(t, b.h.Outcomes(), func(o *handler.Outcome) bool { return o.Peer == req.From && o.Exchange == id })
		expect(t, o, true, handler.ReasonOK)
	}
	answer(honest, 1) // the oldest reply stored
	for id := handler.ExchangeID(100); id < 120; id++ {
		answer(hostile, id)
	}
	// The drops are written without waiting; an empty commit returns once
	// every earlier one is through.
	if err := b.st.Commit(&store.Batch{}); err != nil {
		t.Fatal(err)
	}
	st, err := b.st.Load()
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	for _, in := range st.Incoming {
		switch {
		case in.Peer == string(ih.ID) && (in.State != store.InAnswered || len(in.Reply) != size):
			t.Fatalf("the honest peer's reply: %s, reply of %d bytes: dropped for the hostile peer's", in.State, len(in.Reply))
		case in.Peer == string(ix.ID) && in.State == store.InAnswered:
			stored += len(in.Reply)
		case in.Peer == string(ix.ID) && (in.State != store.InHandled || !in.Answered):
			t.Errorf("the hostile peer's %d: %s, answered %v", in.ID, in.State, in.Answered)
		}
	}
	if stored+size > 6*size || stored == 0 {
		t.Fatalf("the hostile peer's stored replies hold %d bytes, want some, and within the node's bound with the honest one's", stored)
	}
	// The honest peer's resend gets its reply from the store.
	if got := honest.send(b.h, envelope(hpb.Kind_KIND_REQUEST, 1, []byte("q"))); got != pb.Reason_OK {
		t.Fatalf("the honest peer's resend: %v", got)
	}
	if env := honest.next(); env.Kind != hpb.Kind_KIND_REPLY || env.Exchange != 1 || !bytes.Equal(env.Payload, reply(1)) {
		t.Fatalf("the honest peer's resend got %v %d (%d bytes), want its stored reply", env.Kind, env.Exchange, len(env.Payload))
	}
}
