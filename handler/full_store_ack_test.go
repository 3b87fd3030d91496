package handler_test

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// TestAckFreesAFullStore: a node whose store filled with received messages
// the application has not handled yet answers busy to the next one, and the
// application's Acks, which each replace a pending message by a small
// handled record, go through: handling the messages is how room comes back,
// and once it has, messages are accepted again. (The store refused the
// Acks as writes to a full store, and the node stayed stuck.)
func TestAckFreesAFullStore(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	s, err := store.Open(t.TempDir(), store.Options{MaxBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // after the handler's Close
	b := newHandler(t, ib, list, handler.WithStore(s))
	a := newHandler(t, ia, list, handler.WithRetry(1, time.Millisecond, time.Millisecond))
	rnd := rand.NewChaCha8([32]byte{11})
	payload := func() []byte {
		p := make([]byte, 128<<10) // random: compression cannot shrink it
		_, _ = rnd.Read(p)
		return p
	}
	// send sends one message and reports whether b stored it; anything but
	// stored or busy fails the test.
	send := func() bool {
		t.Helper()
		id, err := a.Send(ib.ID, addr(b), payload())
		if err != nil {
			t.Fatal(err)
		}
		o := outcome(t, a, id)
		if o.OK {
			return true
		}
		var ae *handler.AckError
		if o.Reason != handler.ReasonNotAcked || !errors.As(o.Err, &ae) || ae.Reason != p2p.ReasonBusy {
			t.Fatalf("outcome %+v (%v), want ok or busy", o, o.Err)
		}
		return false
	}
	var got []*handler.Message
	for i := 0; ; i++ {
		if i == 500 {
			t.Fatal("the store never filled")
		}
		if !send() {
			break
		}
		got = append(got, tu.Next[*handler.Message](t, b.Events()))
	}
	if len(got) < 10 {
		t.Fatalf("full after %d messages", len(got))
	}
	for i, m := range got {
		if err := b.Ack(m.From, m.Exchange); err != nil {
			t.Fatalf("Ack of message %d of %d, the store full: %v", i+1, len(got), err)
		}
	}
	// The handled messages' room is reclaimed when the store needs it,
	// which the next message waits for, up to a second: a loaded machine
	// may take longer, and the sender sends again, as it would resend.
	for i := 0; !send(); i++ {
		if i == 500 {
			t.Fatal("messages still refused after every one was handled")
		}
	}
	tu.Next[*handler.Message](t, b.Events())
}
