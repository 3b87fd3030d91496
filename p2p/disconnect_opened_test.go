package p2p_test

import (
	"bufio"
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// §5: DisconnectFrom.OpenedBefore spares the connections opened since. A
// handler closing an idle peer passes the moment the peer became idle: a
// connection the peer opened after it, for new work, must not be cut
// before its first stream is answered (the peer takes that for a refusal
// at the handshake and fails an attempt). Without the field every
// connection closes, as before.
func TestDisconnectOpenedBeforeSparesNewerConnections(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	// A dial timeout of a nanosecond: the old connection, which carries no
	// stream, is not spared as one awaiting its first
	// (TestDisconnectOpenedBeforeSparesConnectionAwaitingItsFirstStream).
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) { c.DialTimeout = time.Nanosecond })
	// The node's own view of each connection: its Stat().Opened is what
	// OpenedBefore is compared with.
	opened := make(chan network.Conn, 4)
	closed := make(chan network.Conn, 4)
	b.Host().Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			if c.RemotePeer() == ia.ID {
				opened <- c
			}
		},
		DisconnectedF: func(_ network.Network, c network.Conn) {
			if c.RemotePeer() == ia.ID {
				closed <- c
			}
		},
	})
	next := func(ch <-chan network.Conn, what string) network.Conn {
		t.Helper()
		select {
		case c := <-ch:
			return c
		case <-time.After(tu.Timeout):
			t.Fatalf("no connection %s", what)
			return nil
		}
	}
	raw := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
		defer cancel()
		if err := tu.RawHost(t, ia.Key, "127.0.0.1").Connect(ctx, tu.AddrInfo(b)); err != nil {
			t.Fatal(err)
		}
	}

	raw()
	old := next(opened, "opened")
	// Between the two openings as the node recorded them: old's was
	// before the notification, newer's will be after this.
	cut := time.Now()
	newerHost := tu.RawHost(t, ia.Key, "127.0.0.1")
	s := openStream(t, newerHost, b)
	newer := next(opened, "opened")
	if !old.Stat().Opened.Before(cut) || newer.Stat().Opened.Before(cut) {
		t.Fatalf("opened %v and %v, cut %v", old.Stat().Opened, newer.Stat().Opened, cut)
	}

	b.Sender() <- p2p.DisconnectFrom{Peer: ia.ID, OpenedBefore: cut}
	if c := next(closed, "closed"); c != old {
		t.Fatal("the connection opened after OpenedBefore closed")
	}
	// The node closes a DisconnectFrom's connections one after the other
	// in its loop, within microseconds; a message round trip on the newer
	// one takes longer, and needs it open on both ends.
	br := bufio.NewReader(s)
	sendData(t, s, br, 1, "after")
	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "after" {
		t.Fatalf("delivered %q", d.Bytes)
	}
	if newer.IsClosed() {
		t.Fatal("the connection opened after OpenedBefore closed")
	}

	// Without OpenedBefore, every connection closes, the newest included.
	b.Sender() <- p2p.DisconnectFrom{Peer: ia.ID}
	readEOF(t, s, br)
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if c := next(closed, "closed"); c != newer {
		t.Fatal("another connection closed")
	}
}

// §5: a closing for idleness (OpenedBefore) spares a connection the peer
// opened before it, but less than a dial timeout ago and with no message
// stream on it yet: its first stream may still be on its way (under load a
// handler found its peer idle 0.5 s after the peer connected, closed the
// connection 0.4 s later, and the peer's stream, arriving after, failed as
// a refusal at the handshake). Once it has carried a stream it closes as
// before; so does one older than the dial timeout.
func TestDisconnectOpenedBeforeSparesConnectionAwaitingItsFirstStream(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	handled := make(chan struct{}, 8)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), p2p.WithDisconnectHook(func() { handled <- struct{}{} }))
	// disconnect runs the hook before it closes anything; the node's loop
	// handles commands one at a time, so the hook of a second
	// DisconnectFrom (of a peer with no connection) runs once the first
	// is done.
	disconnect := func(cut time.Time) {
		t.Helper()
		b.Sender() <- p2p.DisconnectFrom{Peer: ia.ID, OpenedBefore: cut}
		b.Sender() <- p2p.DisconnectFrom{Peer: ib.ID, OpenedBefore: cut}
		for range 2 {
			select {
			case <-handled:
			case <-time.After(tu.Timeout):
				t.Fatal("DisconnectFrom not handled")
			}
		}
	}
	opened := make(chan network.Conn, 1)
	b.Host().Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if c.RemotePeer() == ia.ID {
			opened <- c
		}
	}})
	raw := tu.RawHost(t, ia.Key, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := raw.Connect(ctx, tu.AddrInfo(b)); err != nil {
		t.Fatal(err)
	}
	var c network.Conn
	select {
	case c = <-opened:
	case <-time.After(tu.Timeout):
		t.Fatal("no connection")
	}

	disconnect(time.Now())
	if c.IsClosed() {
		t.Fatal("the connection awaiting its first stream was closed")
	}
	// Its first stream comes, on it, and is served.
	s, err := raw.NewStream(ctx, ib.ID, p2p.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Conn().ID() != raw.Network().ConnsToPeer(ib.ID)[0].ID() || len(raw.Network().ConnsToPeer(ib.ID)) != 1 {
		t.Fatal("the stream went on another connection")
	}
	br := bufio.NewReader(s)
	sendData(t, s, br, 1, "first")
	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "first" {
		t.Fatalf("delivered %q", d.Bytes)
	}

	// Having carried a stream, it closes with the next closing.
	closed := make(chan struct{})
	b.Host().Network().Notify(&network.NotifyBundle{DisconnectedF: func(_ network.Network, dc network.Conn) {
		if dc == c {
			close(closed)
		}
	}})
	b.Sender() <- p2p.DisconnectFrom{Peer: ia.ID, OpenedBefore: time.Now()}
	readEOF(t, s, br)
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(tu.Timeout):
		t.Fatal("the connection that carried a stream stayed open")
	}
}

// A connection older than the dial timeout is not awaited: a peer that
// opened it for an exchange has given up on its stream by then.
func TestDisconnectOpenedBeforeClosesConnectionPastADial(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	// Every connection is older than a dial of a nanosecond.
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) { c.DialTimeout = time.Nanosecond })
	closed := make(chan struct{})
	b.Host().Network().Notify(&network.NotifyBundle{DisconnectedF: func(_ network.Network, c network.Conn) {
		if c.RemotePeer() == ia.ID {
			close(closed)
		}
	}})
	raw := tu.RawHost(t, ia.Key, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	if err := raw.Connect(ctx, tu.AddrInfo(b)); err != nil {
		t.Fatal(err)
	}
	b.Sender() <- p2p.DisconnectFrom{Peer: ia.ID, OpenedBefore: time.Now()}
	select {
	case <-closed:
	case <-time.After(tu.Timeout):
		t.Fatal("the connection past a dial timeout stayed open")
	}
}
