package p2p_test

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	mss "github.com/multiformats/go-multistream"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// bufConn reads through a bufio.Reader (which has peeked) and writes to
// the connection.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// A peer the allowlist drops (a membership version applied, a reload)
// while its connection is between the gater's check of the proved key
// (InterceptSecured) and its addition to the swarm (muxer negotiation) is
// not in Network().Conns() when the node enforces the change, and nothing
// checks the allowlist again once the connection is added: it stays open,
// although the documentation promises that removed members are
// "disconnected at once and refused from then on".
func TestRemovedDuringUpgradeIsDisconnected(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, a, b)
	node := tu.Node(t, a, list, tu.Listen("127.0.0.1"))
	var addr ma.Multiaddr
	for _, x := range node.Host().Addrs() {
		if _, err := x.ValueForProtocol(ma.P_TCP); err == nil {
			addr = x
			break
		}
	}
	if addr == nil {
		t.Fatal("no TCP address")
	}
	na, err := manet.ToNetAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	gone := make(chan struct{}, 1)
	opened := make(chan struct{}, 1)
	node.Host().Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			if c.RemotePeer() == b.ID {
				select {
				case opened <- struct{}{}:
				default:
				}
			}
		},
		DisconnectedF: func(_ network.Network, c network.Conn) {
			if c.RemotePeer() == b.ID {
				select {
				case gone <- struct{}{}:
				default:
				}
			}
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	raw, err := net.Dial("tcp", na.String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(tu.Timeout))
	if err := mss.SelectProtoOrFail(noise.ID, raw); err != nil {
		t.Fatal(err)
	}
	// No early muxer negotiation: the muxer is chosen after the
	// handshake, by multistream, which the dialer drives.
	tpt, err := noise.New(noise.ID, b.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := tpt.SecureOutbound(ctx, raw, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	bc := bufConn{Conn: sc, r: bufio.NewReader(sc)}
	// The node writes its multistream header for the muxer only once
	// its gater has admitted b's proved key.
	if _, err := bc.r.Peek(1); err != nil {
		t.Fatal(err)
	}
	// Now the membership changes: b is removed. The node enforces it
	// before this returns (the change is delivered in this goroutine).
	if !list.Remove(b.ID) {
		t.Fatal("b not listed")
	}
	// b finishes its upgrade.
	if err := mss.SelectProtoOrFail(yamux.ID, bc); err != nil {
		t.Fatal(err)
	}
	mc, err := yamux.DefaultTransport.NewConn(bc, false, &network.NullScope{})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	select {
	case <-opened:
	case <-time.After(tu.Timeout):
		t.Fatal("the node never added b's connection")
	}
	// Bounded wait for the node to drop it; the fixed node closes it at
	// once.
	select {
	case <-gone:
	case <-time.After(tu.Timeout):
		t.Fatalf("b, removed from the allowlist, is still connected (%d connections) %s later",
			len(node.Host().Network().ConnsToPeer(b.ID)), tu.Timeout)
	}
}
