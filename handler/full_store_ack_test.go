package handler_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// TestAckFreesAFullStore: a node whose store is full, holding received
// messages the application has not handled yet, takes the application's
// Acks, which each replace a pending message by a small handled record:
// handling the messages is how room comes back, and once it has, the
// node's own sends are accepted again. (The store refused the Acks as
// writes to a full store, and the node stayed stuck.) The peers cannot
// fill the store by themselves (MaxInboxBytes, a quarter of its cap), so
// the node's own messages to a peer that is down fill the rest.
func TestAckFreesAFullStore(t *testing.T) {
	ia, ib, ic := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib, ic)
	// The store logs each reclaim's end: the last sends wait for one.
	reclaimed := make(chan struct{}, 1)
	core, _ := observer.New(zapcore.InfoLevel)
	log := zap.New(core, zap.Hooks(func(e zapcore.Entry) error {
		if strings.HasPrefix(e.Message, "store compacted") {
			select {
			case reclaimed <- struct{}{}:
			default:
			}
		}
		return nil
	}))
	s, err := store.Open(t.TempDir(), store.Options{MaxBytes: 4 << 20, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // after the handler's Close
	// b retries its sends to c for the test's life: they stay in the outbox.
	b := newHandler(t, ib, list, handler.WithStore(s), handler.WithRetry(100, time.Hour, time.Hour))
	a := newHandler(t, ia, list, handler.WithRetry(1, time.Millisecond, time.Millisecond))
	rnd := rand.NewChaCha8([32]byte{11})
	payload := func() []byte {
		p := make([]byte, 128<<10) // random: compression cannot shrink it
		_, _ = rnd.Read(p)
		return p
	}
	// a sends messages until b answers busy; anything but stored or busy
	// fails the test.
	var got []*handler.Message
	for i := 0; ; i++ {
		if i == 500 {
			t.Fatal("b never answered busy")
		}
		id, err := a.Send(ib.ID, addr(b), payload())
		if err != nil {
			t.Fatal(err)
		}
		o := outcome(t, a, id)
		if !o.OK {
			var ae *handler.AckError
			if o.Reason != handler.ReasonNotAcked || !errors.As(o.Err, &ae) || ae.Reason != p2p.ReasonBusy {
				t.Fatalf("outcome %+v (%v), want ok or busy", o, o.Err)
			}
			break
		}
		got = append(got, tu.Next[*handler.Message](t, b.Events()))
	}
	if len(got) < 4 {
		t.Fatalf("busy after %d messages", len(got))
	}
	// b's own messages to c, which listens nowhere, fill the store: each
	// stays in the outbox, its next attempt an hour away.
	down := ma.StringCast("/ip4/127.0.0.1/tcp/1")
	for i := 0; ; i++ {
		if i == 500 {
			t.Fatal("the store never filled")
		}
		if _, err := b.Send(ic.ID, down, payload()); err != nil {
			if !errors.Is(err, store.ErrFull) {
				t.Fatalf("send %d: %v, want store.ErrFull", i, err)
			}
			break
		}
	}
	for i, m := range got {
		if err := b.Ack(m.From, m.Exchange); err != nil {
			t.Fatalf("Ack of message %d of %d, the store full: %v", i+1, len(got), err)
		}
	}
	// The handled messages' room is reclaimed when the store needs it,
	// which a send waits for, up to a second: a loaded machine may take
	// longer (and a reclaim that freed little puts the next off), and the
	// application sends again once one has ended.
	deadline := time.After(30 * time.Second)
	for {
		_, err := b.Send(ic.ID, down, payload())
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrFull) {
			t.Fatalf("send after the Acks: %v", err)
		}
		select {
		case <-reclaimed:
		case <-deadline:
			t.Fatal("sends still refused 30s after every message was handled")
		}
	}
}
