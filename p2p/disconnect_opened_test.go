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
