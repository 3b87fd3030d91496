package p2p_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// closingPeer is a node b whose DisconnectFrom of a is under way and held
// open (Node.Hold: its drain is done, its close waits), as a slow drain
// holds it open on a loaded machine: b resets every stream a opens on the
// connection, and reads nothing more a writes on it.
type closingPeer struct {
	a, b    *p2p.Node
	release func() // lets b close the connection; safe to call again
	waited  atomic.Int32
}

// newClosingPeer starts a and b, and sends one message from a to b so that
// a has a stream on the connection. mutate applies to a.
func newClosingPeer(t *testing.T, mutate ...func(*p2p.Config)) *closingPeer {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	cp := &closingPeer{}
	hook := p2p.WithPeerClosingHook(func() {
		// a waits for the connection to go: let it.
		cp.waited.Add(1)
		cp.release()
	})
	cp.a = tu.Node(t, ia, list, append([]func(*p2p.Config){hook}, mutate...)...)
	cp.b = tu.Node(t, ib, list)
	var once sync.Once
	hold := cp.b.Hold(ia.ID)
	cp.release = func() { once.Do(hold) }
	t.Cleanup(cp.release)
	cp.send(t, 100, "first")
	return cp
}

// send sends one message from a to b and returns its Status.
func (cp *closingPeer) send(t *testing.T, id uint64, payload string) p2p.Status {
	t.Helper()
	cp.a.Sender() <- p2p.SendMsg{Peer: cp.b.ID(), Addr: cp.b.Addrs()[0], ID: id, Data: []byte(payload)}
	return nextOf(t, cp.a, statusOf(id))
}

// resend sends a message the way the handler does: again after each
// failure, with a new ID, for at most maxAttempts attempts (the test lets
// b close the connection after the third failure, so that a fix that does
// not work fails the test rather than hangs it). It reports how many
// attempts failed, and checks that b delivered the message once.
func (cp *closingPeer) resend(t *testing.T, firstID uint64) (failed int) {
	t.Helper()
	const maxAttempts = 5
	for attempt := range uint64(maxAttempts) {
		st := cp.send(t, firstID+attempt, "m")
		if st.OK {
			d := nextOf(t, cp.b, func(d p2p.Data) bool { return string(d.Bytes) != "first" })
			if string(d.Bytes) != "m" {
				t.Fatalf("b delivered %q", d.Bytes)
			}
			return failed
		}
		t.Logf("attempt %d: %s (%v)", attempt+1, st.Reason, st.Err)
		if st.Reason != p2p.ReasonConnectionLost {
			t.Fatalf("attempt %d: status %+v, want connection lost", attempt+1, st)
		}
		if failed++; failed == 3 {
			cp.release()
		}
	}
	t.Fatalf("not delivered in %d attempts", maxAttempts)
	return failed
}

// §5: the peer disconnects (its drain done, the connection not yet
// closed) and a's stream on the connection has ended (a read the peer's
// end); a's next message opens a stream there, which the peer resets. That
// message fails, but a takes the connection for one the peer is closing:
// the resend waits for it to go and goes on a new connection, rather
// than on a new stream the peer resets again. (Before, every resend met a
// reset until the peer's close, which on a loaded machine outlasted the
// handler's five attempts.)
func TestResendAfterPeersCloseWaitsForNewConnection(t *testing.T) {
	ended := make(chan bool, 16)
	cp := newClosingPeer(t, p2p.WithEndHook(func(inbound bool) {
		select {
		case ended <- inbound:
		default:
		}
	}))
	cp.b.Sender() <- p2p.DisconnectFrom{Peer: cp.a.ID()}
	select {
	case <-ended: // a's stream, ended by b's drain
	case <-time.After(tu.Timeout):
		t.Fatal("a's stream did not end")
	}
	if failed := cp.resend(t, 1); failed > 1 {
		t.Fatalf("%d attempts failed, want at most 1", failed)
	}
	if cp.waited.Load() == 0 {
		t.Fatal("a did not wait for the connection to go")
	}
}

// The same when a's message goes on its stream as b's drain ends it: b
// reads but does not deliver it, and a reads b's end with the message
// still awaiting its ack. That tells a the peer is closing the
// connection: the message fails, and its resend waits for the connection
// to go.
func TestMessageCrossingPeersCloseResentOnNewConnection(t *testing.T) {
	var (
		cp      *closingPeer
		crossed atomic.Bool
		sent    = make(chan error, 1)
	)
	cp = newClosingPeer(t, p2p.WithOpenedStreamHooks(nil, func(err error) {
		// a's reader has met b's end and not yet seen it: a still
		// writes to the stream. Once only: the first stream's end.
		if err == nil || !crossed.CompareAndSwap(false, true) {
			return
		}
		// Written from here, as the stream can take it at once.
		sent <- cp.a.Send(t.Context(), p2p.SendMsg{Peer: cp.b.ID(), ID: 1, Data: []byte("m")})
	}))
	cp.b.Sender() <- p2p.DisconnectFrom{Peer: cp.a.ID()}
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(tu.Timeout):
		t.Fatal("a's reader did not meet b's end")
	}
	failed := 0
	if st := nextOf(t, cp.a, statusOf(1)); !st.OK {
		t.Logf("attempt 1: %s (%v)", st.Reason, st.Err)
		failed = 1 + cp.resend(t, 2)
	}
	if failed > 1 {
		t.Fatalf("%d attempts failed, want at most 1", failed)
	}
}

// An idle close is not a disconnection: the peer closes a stream that
// carried nothing for StreamIdleTimeout and keeps the connection (§4.1).
// The next message goes on a new stream on that connection at once,
// without waiting for the connection to close.
func TestMessageAfterIdleCloseDoesNotWait(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	ended := make(chan bool, 16)
	var waited atomic.Int32
	a := tu.Node(t, ia, list, p2p.WithDrainWait(10*tu.Timeout),
		p2p.WithPeerClosingHook(func() { waited.Add(1) }),
		p2p.WithEndHook(func(inbound bool) {
			select {
			case ended <- inbound:
			default:
			}
		}))
	b := tu.Node(t, ib, list, func(c *p2p.Config) { c.StreamIdleTimeout = 50 * time.Millisecond })
	for id := range uint64(3) {
		a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: b.Addrs()[0], ID: id + 1, Data: fmt.Appendf(nil, "m%d", id)}
		if st := nextOf(t, a, statusOf(id+1)); !st.OK {
			t.Fatalf("message %d: status %+v", id+1, st)
		}
		select {
		case <-ended: // b closed the idle stream
		case <-time.After(tu.Timeout):
			t.Fatal("b did not close the idle stream")
		}
	}
	if n := waited.Load(); n != 0 {
		t.Fatalf("a waited %d times for the connection to close", n)
	}
	if n := len(a.Host().Network().ConnsToPeer(ib.ID)); n != 1 {
		t.Fatalf("%d connections to b, want the first one only", n)
	}
}
