package p2p_test

import (
	"bytes"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// TestAcceptWaitsBeforeAcking: a message whose verdict is pending is neither
// delivered nor acked until the verdict comes, and pipelined messages keep
// their order whatever the verdicts.
func TestAcceptWaitsBeforeAcking(t *testing.T) {
	release := make(chan struct{})
	judged := make(chan string, 3)
	accept := func(d p2p.Data) (p2p.Reason, func() p2p.Reason) {
		judged <- string(d.Bytes)
		switch string(d.Bytes) {
		case "held":
			return "", func() p2p.Reason { <-release; return p2p.ReasonOK }
		case "stale":
			return p2p.ReasonUnknownExchange, nil
		}
		return p2p.ReasonOK, nil
	}
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, list)
	b := tu.Node(t, ib, list, func(c *p2p.Config) { c.Accept = accept })

	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: []byte("held")}
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 2, Data: []byte("stale")}
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 3, Data: []byte("plain")}

	// Nothing is delivered or acked while the first verdict is pending,
	// not even the messages judged at once behind it.
	for _, want := range []string{"held", "stale", "plain"} {
		select {
		case got := <-judged:
			if got != want {
				t.Fatalf("judged %q, want %q", got, want)
			}
		case <-time.After(tu.Timeout):
			t.Fatalf("%q never judged", want)
		}
	}
	tu.None[p2p.Data](t, b.Receiver(), 50*time.Millisecond)
	tu.None[p2p.Status](t, a.Receiver(), 50*time.Millisecond)
	close(release)

	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "held" {
		t.Fatalf("first delivery %q", d.Bytes)
	}
	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "plain" {
		t.Fatalf("second delivery %q: the refused message must not be delivered", d.Bytes)
	}
	want := []p2p.Reason{p2p.ReasonOK, p2p.ReasonUnknownExchange, p2p.ReasonOK}
	for i, r := range want {
		st := tu.Next[p2p.Status](t, a.Receiver())
		if st.MsgID != uint64(i+1) || st.Reason != r {
			t.Fatalf("status %d: %+v, want %s", i+1, st, r)
		}
	}
	// A refusal of Accept's is no misbehaviour.
	if keys := b.Limiter().Stats().Peers.Keys; keys != 0 {
		t.Fatalf("%d peers charged", keys)
	}
}

// TestOverflowTakesWhatAcceptTook: with the Receiver full, a message that
// Accept took through a wait is acked OK and handed to Overflow, not
// refused busy; one judged at once is refused busy, as without Overflow.
func TestOverflowTakesWhatAcceptTook(t *testing.T) {
	accept := func(d p2p.Data) (p2p.Reason, func() p2p.Reason) {
		if bytes.HasPrefix(d.Bytes, []byte("stored")) {
			return "", func() p2p.Reason { return p2p.ReasonOK }
		}
		return p2p.ReasonOK, nil
	}
	overflowed := make(chan string, 4)
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, list)
	b := tu.Node(t, ib, list, func(c *p2p.Config) {
		c.Accept = accept
		c.ReceiverBuffer = 2 // the Connected event, then one message
		c.Overflow = func(d p2p.Data) { overflowed <- string(d.Bytes) }
	})
	send := func(id uint64, data string) p2p.Status {
		t.Helper()
		a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: id, Data: []byte(data)}
		return nextOf(t, a, statusOf(id))
	}
	if st := send(1, "plain"); !st.OK { // fills the Receiver: nobody reads it
		t.Fatalf("first: %+v", st)
	}
	if st := send(2, "stored"); !st.OK {
		t.Fatalf("taken by Accept, Receiver full: %+v, want OK", st)
	}
	select {
	case got := <-overflowed:
		if got != "stored" {
			t.Fatalf("overflowed %q", got)
		}
	case <-time.After(tu.Timeout):
		t.Fatal("not handed to Overflow")
	}
	if st := send(3, "plain again"); st.Reason != p2p.ReasonBusy {
		t.Fatalf("judged at once, Receiver full: %+v, want busy", st)
	}
	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "plain" {
		t.Fatalf("delivered %q", d.Bytes)
	}
	tu.None[p2p.Data](t, b.Receiver(), 50*time.Millisecond)
}

// TestOverflowTakesKnownVerdict: a message AcceptReady takes through a
// wait whose ready is closed already (a verdict known at once: the
// handler's replies) is settled by the stream's reader without the
// settler, and is still one the caller took: with the Receiver full it
// is acked OK and handed to Overflow, not answered busy.
func TestOverflowTakesKnownVerdict(t *testing.T) {
	known := make(chan struct{})
	close(known)
	accept := func(d p2p.Data) (p2p.Reason, <-chan struct{}, func() p2p.Reason) {
		if bytes.HasPrefix(d.Bytes, []byte("taken")) {
			return p2p.ReasonOK, known, func() p2p.Reason { return p2p.ReasonOK }
		}
		return p2p.ReasonOK, nil, nil
	}
	overflowed := make(chan string, 4)
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, list)
	b := tu.Node(t, ib, list, func(c *p2p.Config) {
		c.AcceptReady = accept
		c.ReceiverBuffer = 2 // the Connected event, then one message
		c.Overflow = func(d p2p.Data) { overflowed <- string(d.Bytes) }
	})
	send := func(id uint64, data string) p2p.Status {
		t.Helper()
		a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: id, Data: []byte(data)}
		return nextOf(t, a, statusOf(id))
	}
	if st := send(1, "plain"); !st.OK { // fills the Receiver: nobody reads it
		t.Fatalf("first: %+v", st)
	}
	if st := send(2, "taken"); !st.OK {
		t.Fatalf("taken with a known verdict, Receiver full: %+v, want OK", st)
	}
	select {
	case got := <-overflowed:
		if got != "taken" {
			t.Fatalf("overflowed %q", got)
		}
	case <-time.After(tu.Timeout):
		t.Fatal("not handed to Overflow")
	}
	if st := send(3, "plain again"); st.Reason != p2p.ReasonBusy {
		t.Fatalf("judged at once, Receiver full: %+v, want busy", st)
	}
}

// TestViaAnswersOnTheStreamOfTheQuestion: two nodes with one key connect to
// a third; its answer sent Via the question's origin reaches the node that
// asked, not the newest connection.
func TestViaAnswersOnTheStreamOfTheQuestion(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	b := tu.Node(t, ib, list)
	a1 := tu.Node(t, ia, list)
	a2 := tu.Node(t, ia, list)
	for i, a := range []*p2p.Node{a1, a2} {
		a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: []byte{byte(i)}}
		if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
			t.Fatalf("question %d: %+v", i, st)
		}
	}
	var first p2p.Data
	for range 2 {
		if d := tu.Next[p2p.Data](t, b.Receiver()); d.Bytes[0] == 0 {
			first = d
		}
	}
	if first.Bytes == nil {
		t.Fatal("no question from the first node")
	}
	// Answer the first (older) connection's question.
	b.Sender() <- p2p.SendMsg{Peer: first.From, ID: 9, Data: []byte("answer"), Via: first.Origin}
	if st := tu.Next[p2p.Status](t, b.Receiver()); !st.OK {
		t.Fatalf("answer: %+v", st)
	}
	if d := tu.Next[p2p.Data](t, a1.Receiver()); !bytes.Equal(d.Bytes, []byte("answer")) {
		t.Fatalf("first node got %q", d.Bytes)
	}
	tu.None[p2p.Data](t, a2.Receiver(), 50*time.Millisecond)
}
