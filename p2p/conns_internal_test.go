package p2p

import (
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// trackedConn is a connection as far as the tracker looks at one.
type trackedConn struct {
	network.Conn // nil: the tracker calls only the methods below
	id           string
	closed       bool
}

func (c *trackedConn) ID() string              { return c.id }
func (c *trackedConn) IsClosed() bool          { return c.closed }
func (c *trackedConn) RemotePeer() peer.ID     { return "peer" }
func (c *trackedConn) Stat() network.ConnStats { return network.ConnStats{} }

// A stream opened on a connection just before it closed asks for the
// connection's state after its Disconnected: it must get what the
// connection told (here, that this node closed it), not a new state, which
// would make the connection lost read as the peer's refusal.
func TestClosedConnKeepsItsState(t *testing.T) {
	var tr connTracker
	c := &trackedConn{id: "c"}
	tr.of(c).closedHere.Store(true)
	c.closed = true
	tr.Disconnected(nil, c)
	if !tr.of(c).closedHere.Load() {
		t.Fatal("the state of a connection that closed was forgotten")
	}

	// It is kept among the last closedKept to close, no longer.
	for i := range closedKept {
		o := &trackedConn{id: fmt.Sprint(i)}
		tr.of(o)
		o.closed = true
		tr.Disconnected(nil, o)
	}
	if tr.of(c).closedHere.Load() {
		t.Fatalf("the state of a connection was kept after %d more closed", closedKept)
	}
	if len(tr.state) != 0 {
		t.Fatalf("%d closed connections are still tracked as open", len(tr.state))
	}
}
