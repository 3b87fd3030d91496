package p2p_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// A Send that found the node open and is about to hand its message over
// when Close runs must either fail with ErrClosed or, if it returns nil,
// see its message get exactly one Status (closed). Its select between the
// Sender channel and the node's end can take the channel even after Close
// has emptied it, and a message accepted then was never answered. Many
// Sends are held at that point, so that the random choice of a select
// cannot hide the loss.
func TestSendRacingCloseStatusOrErrClosed(t *testing.T) {
	const senders = 32
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	paused := make(chan struct{}, senders)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	// The Sends go on once Close is at its barrier, or, were there none,
	// once Close has returned.
	a := tu.Node(t, ia, tu.Allowlist(t, ia, ib), func(c *p2p.Config) {
		c.SenderBuffer = senders
		c.ReceiverBuffer = 4 * senders
	}, p2p.WithSendCloseHooks(func() {
		paused <- struct{}{}
		<-release
	}, free))

	type result struct {
		id  uint64
		err error
	}
	results := make(chan result, senders)
	for i := uint64(1); i <= senders; i++ {
		go func() {
			// No stream to the peer: the slow way.
			err := a.Send(context.Background(), p2p.SendMsg{Peer: ib.ID, ID: i, Data: []byte("x")})
			results <- result{i, err}
		}()
	}
	deadline := time.NewTimer(tu.Timeout)
	defer deadline.Stop()
	for range senders {
		select {
		case <-paused:
		case <-deadline.C:
			t.Fatal("the Sends did not reach the hook")
		}
	}
	closed := make(chan struct{})
	go func() {
		a.Close()
		free()
		close(closed)
	}()
	accepted := make(map[uint64]bool)
	for range senders {
		select {
		case r := <-results:
			switch {
			case r.err == nil:
				accepted[r.id] = true
			case !errors.Is(r.err, p2p.ErrClosed):
				t.Fatalf("message %d: %v", r.id, r.err)
			}
		case <-deadline.C:
			t.Fatal("a Send did not return")
		}
	}
	select {
	case <-closed:
	case <-deadline.C:
		t.Fatal("Close did not return")
	}
	got := make(map[uint64][]p2p.Status)
	for ev := range a.Receiver() { // closed by Close: bounded
		if st, ok := ev.(p2p.Status); ok {
			got[st.MsgID] = append(got[st.MsgID], st)
		}
	}
	for i := uint64(1); i <= senders; i++ {
		sts := got[i]
		switch {
		case !accepted[i] && len(sts) != 0:
			t.Errorf("message %d: Send returned ErrClosed, yet Statuses %+v", i, sts)
		case accepted[i] && len(sts) != 1:
			t.Errorf("message %d: Send returned nil, and %d Statuses %+v", i, len(sts), sts)
		case accepted[i] && sts[0].Reason != p2p.ReasonClosed:
			t.Errorf("message %d: Status %+v, want closed", i, sts[0])
		}
	}
	t.Logf("%d of %d Sends accepted", len(accepted), senders)
}
