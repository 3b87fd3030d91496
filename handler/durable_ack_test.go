package handler_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// passOneStore, once armed, writes the first batch and holds every later
// one until release: a disk on which the second write is slow.
type passOneStore struct {
	*store.Store
	mu      sync.Mutex
	armed   bool
	passed  bool
	held    []func()
	release bool
}

func (s *passOneStore) CommitAsync(b *store.Batch, done func(error)) {
	s.mu.Lock()
	if s.armed && !s.release {
		if s.passed {
			cp := *b
			s.held = append(s.held, func() { s.Store.CommitAsync(&cp, done) })
			s.mu.Unlock()
			return
		}
		s.passed = true
	}
	s.mu.Unlock()
	s.Store.CommitAsync(b, done)
}

func (s *passOneStore) Commit(b *store.Batch) error {
	ch := make(chan error, 1)
	s.CommitAsync(b, func(err error) { ch <- err })
	return <-ch
}

func (s *passOneStore) arm() {
	s.mu.Lock()
	s.armed = true
	s.mu.Unlock()
}

func (s *passOneStore) unhold() {
	s.mu.Lock()
	s.release = true
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, f := range held {
		f()
	}
}

// TestDurableAckNotHeldBehindNextWrite: a peer pipelines two messages to a
// handler with a store; the first is on disk, the second's write is slow.
// The first's ack must not wait for the second's write (docs/PROTOCOL.md
// §4.4: each ack is late by its own disk write, not by the next one's):
// the node's settler wrote the acks it owed only when no frame waited in
// it, and so held the first ack until the second's write was done.
func TestDurableAckNotHeldBehindNextWrite(t *testing.T) {
	ih, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ih, ir)
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &passOneStore{Store: st}
	t.Cleanup(func() { s.unhold(); st.Close() })
	h := newHandler(t, ih, list, handler.WithStore(s), func(c *handler.Config) { c.KeepConnection = true })
	t.Cleanup(s.unhold) // before h.Close, which waits for the store
	r := newRawPeer(t, ir, "127.0.0.1")

	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := r.host.Connect(ctx, peer.AddrInfo{ID: h.PeerID(), Addrs: []ma.Multiaddr{addr(h)}}); err != nil {
		t.Fatal(err)
	}
	ps, err := r.host.NewStream(ctx, h.PeerID(), p2p.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	rs := r.attach(ps)
	go rs.read()

	s.arm()
	var burst []byte
	for id := uint64(1); id <= 2; id++ {
		burst = append(burst, frameBytes(pb.DataFrame(&pb.Data{Id: id,
			Payload: envelope(hpb.Kind_KIND_MESSAGE, handler.ExchangeID(id), []byte("m"))}))...)
	}
	rs.wrote.Add(2)
	if err := rs.write(burst); err != nil {
		t.Fatal(err)
	}
	wait := time.NewTimer(3 * time.Second) // far over any scheduling delay
	defer wait.Stop()
	select {
	case ack := <-rs.acks:
		if ack.Id != 1 || ack.Reason != pb.Reason_OK {
			t.Fatalf("ack %v, want 1 OK", ack)
		}
	case <-rs.done:
		t.Fatalf("stream ended: %v", rs.err)
	case <-wait.C:
		t.Fatal("the first message's ack waited for the second's disk write")
	}
	s.unhold()
	select {
	case ack := <-rs.acks:
		if ack.Id != 2 || ack.Reason != pb.Reason_OK {
			t.Fatalf("ack %v, want 2 OK", ack)
		}
	case <-time.After(tu.Timeout):
		t.Fatal("no ack of the second message once it was written")
	}
}
