package handler_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// answerWith answers every request h receives with reply, and leaves its
// one-way messages unacknowledged, until h closes.
func answerWith(t testing.TB, h *handler.Handler, reply []byte) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ev := range h.Events() {
			if r, ok := ev.(*handler.Request); ok {
				h.Response(r.From, r.Exchange, reply)
			}
		}
	}()
	t.Cleanup(func() {
		h.Close()
		wg.Wait()
	})
}

// TestEphemeralInboxBoundedNodeWide: without a store, what the requests of
// all peers together hold in memory (requests held, replies awaiting their
// acks) is bounded by MaxInboxBytes, not only each peer's by
// MaxInboxBytesPerPeer. Three listed peers, each under its own bound and
// never acking our replies, made the node hold the sum of their bounds
// (N peers, N times 64 MiB); now past the node's bound their next request
// is refused busy, while a peer that holds nothing is still served and the
// node's own Request still goes through.
func TestEphemeralInboxBoundedNodeWide(t *testing.T) {
	ib, ic := tu.NewIdentity(t), tu.NewIdentity(t)
	ir := []tu.Identity{tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)}
	list := tu.Allowlist(t, ib, ic, ir[0], ir[1], ir[2])
	const size = 16 << 10
	const bound = 5*size + 256
	b := newHandler(t, ib, list, func(c *handler.Config) {
		c.MaxInboxBytesPerPeer = 3*size + 256 // three requests of a peer, with their small replies
		c.MaxInboxBytes = bound               // five of all
	})
	answerWith(t, b, []byte("ok"))
	c := newHandler(t, ic, list)
	echo(t, c)
	var raw []*rawPeer
	for _, id := range ir {
		r := newRawPeer(t, id, "127.0.0.1")
		r.setPolicy(noAckReplies)
		raw = append(raw, r)
	}
	payload := bytes.Repeat([]byte("x"), size)

	// Each answered request holds its payload and a small reply.
	sendHeld(t, raw[0], b, 1, payload)
	sendHeld(t, raw[0], b, 2, payload)
	sendHeld(t, raw[1], b, 1, payload)
	sendHeld(t, raw[1], b, 2, payload)
	sendHeld(t, raw[2], b, 1, payload)
	checkHeld(t, b, raw[2], 1, size, size+64)
	// Each of them has room under its own bound, none under the node's.
	for i, id := range []handler.ExchangeID{3, 3, 2} {
		if r := raw[i].send(b, envelope(hpb.Kind_KIND_REQUEST, id, payload)); r != pb.Reason_BUSY {
			t.Fatalf("peer %d's request %d past the node's bound: %v, want busy", i, id, r)
		}
	}
	checkHeld(t, b, raw[2], 1, size, size+64)
	if held := b.HeldBytes(); held > bound {
		t.Fatalf("the handler holds %d bytes, want at most %d", held, bound)
	}

	// A peer that holds nothing is served, and so is the node itself.
	id, err := c.Request(ib.ID, addr(b), payload)
	if err != nil {
		t.Fatal(err)
	}
	if o := outcome(t, c, id); !o.OK || o.Reply == nil || string(o.Reply.Data) != "ok" {
		t.Fatalf("the honest peer's request: %+v", o)
	}
	id, err = b.Request(ic.ID, addr(c), []byte("own"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, b, id), true, handler.ReasonOK)
}

// TestInboxBoundedNodeWideByStoreCap: with a store, the messages all peers
// leave unhandled are bounded by MaxInboxBytes, a quarter of the store's
// cap by default. Three listed peers, each well under its own bound
// (MaxInboxBytesPerPeer, 64 MiB), filled a store of 16 MiB together, and
// then the node's own Request failed full and an honest peer's request was
// refused busy until the application caught up. Now past the node's bound
// their messages are refused busy, and the rest of the store is the
// node's.
func TestInboxBoundedNodeWideByStoreCap(t *testing.T) {
	ib, ic := tu.NewIdentity(t), tu.NewIdentity(t)
	ir := []tu.Identity{tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)}
	list := tu.Allowlist(t, ib, ic, ir[0], ir[1], ir[2])
	const storeCap = 16 << 20
	s, err := store.Open(t.TempDir(), store.Options{MaxBytes: storeCap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	b := newHandler(t, ib, list, handler.WithStore(s))
	if got := b.MaxInboxBytes(); got != storeCap/4 {
		t.Fatalf("MaxInboxBytes %d, want a quarter of the store's cap, %d", got, storeCap/4)
	}
	answerWith(t, b, []byte("ok")) // and never acks a message
	c := newHandler(t, ic, list)
	echo(t, c)
	var raw []*rawPeer
	for _, id := range ir {
		raw = append(raw, newRawPeer(t, id, "127.0.0.1"))
	}
	// Random bytes: the store's tables compress.
	payload := make([]byte, 256<<10)
	rng := rand.NewChaCha8([32]byte{7})
	_, _ = rng.Read(payload)

	// 18 MiB in all, 6 MiB from each peer.
	const rounds = 24
	var ok, busy int
	for id := handler.ExchangeID(1); id <= rounds; id++ {
		for i, r := range raw {
			switch reason := r.send(b, envelope(hpb.Kind_KIND_MESSAGE, id, payload)); reason {
			case pb.Reason_OK:
				ok++
			case pb.Reason_BUSY:
				busy++
			default:
				t.Fatalf("peer %d's message %d: %v", i, id, reason)
			}
		}
	}
	t.Logf("%d messages taken, %d refused busy", ok, busy)
	if busy == 0 || ok > storeCap/4/len(payload) {
		t.Fatalf("%d messages taken, %d refused busy: want at most %d taken", ok, busy, storeCap/4/len(payload))
	}
	if held := b.InboxTotal(); held > storeCap/4 {
		t.Fatalf("the peers hold %d bytes, want at most %d", held, storeCap/4)
	}

	// A peer that holds nothing is served, and the node's own Request
	// finds room in the store.
	id, err := c.Request(ib.ID, addr(b), []byte("honest"))
	if err != nil {
		t.Fatal(err)
	}
	if o := outcome(t, c, id); !o.OK || o.Reply == nil || string(o.Reply.Data) != "ok" {
		t.Fatalf("the honest peer's request: %+v", o)
	}
	id, err = b.Request(ic.ID, addr(c), payload)
	if errors.Is(err, store.ErrFull) {
		t.Fatalf("the node's own request: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, b, id), true, handler.ReasonOK)
}

// TestStoredRepliesBoundedNodeWide: the replies a store keeps for resends
// of answered requests are bounded over all peers by MaxInboxBytes (the
// largest holder's first: TestStoredRepliesTrimmedFromTheLargestHolder),
// not only per peer: N peers sending fresh
// requests each kept up to MaxInboxBytesPerPeer of replies in the store,
// together more than it holds. As per peer, a reply still on its way to its
// peer is kept, whatever its age, and a dropped one keeps its dedupe
// record, marked answered.
func TestStoredRepliesBoundedNodeWide(t *testing.T) {
	ib := tu.NewIdentity(t)
	ir := []tu.Identity{tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)}
	const size = 1000
	b := newNode(t, ib, tu.Allowlist(t, ib, ir[0], ir[1], ir[2]), handler.WithKeepConnection(true),
		func(c *handler.Config) { c.MaxInboxBytes = 3 * size }) // two replies and their envelopes
	var raw []*rawPeer
	for _, id := range ir {
		raw = append(raw, newRawPeer(t, id, "127.0.0.1"))
	}
	raw[0].setPolicy(noAckReplies) // its reply stays on its way
	reply := func(i int, id handler.ExchangeID) []byte { return bytes.Repeat([]byte{byte(10*i) + byte(id)}, size) }
	answer := func(i int, id handler.ExchangeID) {
		t.Helper()
		if r := raw[i].send(b.h, envelope(hpb.Kind_KIND_REQUEST, id, []byte("q"))); r != pb.Reason_OK {
			t.Fatalf("peer %d's request %s: %v", i, id, r)
		}
		if r := nextRequest(t, b.h); r.From != ir[i].ID || r.Exchange != id {
			t.Fatalf("request %+v", r)
		}
		if err := b.h.Response(ir[i].ID, id, reply(i, id)); err != nil {
			t.Fatal(err)
		}
		for {
			env := raw[i].next()
			if env.Kind == hpb.Kind_KIND_REPLY && handler.ExchangeID(env.Exchange) == id && bytes.Equal(env.Payload, reply(i, id)) {
				break
			}
		}
		if i == 0 {
			return
		}
		o := tu.NextMatch(t, b.h.Outcomes(), func(o *handler.Outcome) bool { return o.Peer == ir[i].ID && o.Exchange == id })
		expect(t, o, true, handler.ReasonOK)
	}
	answer(0, 1)
	answer(1, 1)
	answer(2, 1)
	answer(1, 2)
	answer(2, 2)
	// The drops are written without waiting; an empty commit returns once
	// every earlier one is through.
	if err := b.st.Commit(&store.Batch{}); err != nil {
		t.Fatal(err)
	}
	st, err := b.st.Load()
	if err != nil {
		t.Fatal(err)
	}
	// Kept: peer 0's (the oldest, on its way) and the newest.
	type key struct {
		peer string
		id   uint64
	}
	kept := map[key]bool{{string(ir[0].ID), 1}: true, {string(ir[2].ID), 2}: true}
	for _, in := range st.Incoming {
		k := key{in.Peer, in.ID}
		if kept[k] && (in.State != store.InAnswered || len(in.Reply) != size) ||
			!kept[k] && (in.State != store.InHandled || !in.Answered || len(in.Reply) != 0) {
			t.Errorf("exchange %d of %s: %s, answered %v, reply of %d bytes (kept: %v)", in.ID, peer.ID(in.Peer), in.State, in.Answered, len(in.Reply), kept[k])
		}
	}
	if len(st.Incoming) != 5 {
		t.Errorf("%d incoming records, want 5", len(st.Incoming))
	}
}

// TestMaxInboxBytesConfig: MaxInboxBytes defaults to DefaultMaxInboxBytes
// without a store, and New refuses, naming the field, a negative value and,
// with a store, one over half its cap, with which the peers could fill it.
func TestMaxInboxBytesConfig(t *testing.T) {
	ib := tu.NewIdentity(t)
	list := tu.Allowlist(t, ib)
	if got := newHandler(t, ib, list).MaxInboxBytes(); got != handler.DefaultMaxInboxBytes {
		t.Fatalf("MaxInboxBytes %d without a store, want %d", got, handler.DefaultMaxInboxBytes)
	}
	s, err := store.Open(t.TempDir(), store.Options{MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, c := range []struct {
		max   int
		store bool
	}{{-1, false}, {-1, true}, {32<<20 + 1, true}} {
		opts := []handler.Option{func(cfg *handler.Config) { cfg.MaxInboxBytes = c.max }}
		if c.store {
			opts = append(opts, handler.WithStore(s))
		}
		h, err := handler.New(nil, ib.Key, list, opts...)
		if err == nil {
			h.Close()
			t.Fatalf("MaxInboxBytes %d (store: %v) accepted", c.max, c.store)
		}
		if !errors.Is(err, handler.ErrInvalidConfig) || !strings.Contains(err.Error(), "MaxInboxBytes") {
			t.Fatalf("MaxInboxBytes %d (store: %v): %v", c.max, c.store, err)
		}
	}
	h := newHandler(t, ib, list, handler.WithStore(s), func(cfg *handler.Config) { cfg.MaxInboxBytes = 32 << 20 })
	if got := h.MaxInboxBytes(); got != 32<<20 {
		t.Fatalf("MaxInboxBytes %d, want half the store's cap as set", got)
	}
}
