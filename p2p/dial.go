package p2p

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Dialing a peer. go-libp2p's swarm joins the dials of one peer that
// overlap: its dial worker for the peer serves every dial made while one
// is in progress, and keeps the connections it made until the last of
// those dials has returned. A dial joining late is handed such a
// connection without a look at whether it is still open: one this node
// may have closed since (DisconnectFrom). Its caller took it for the
// dial's own connection, closed at once with nothing accepted on it: the
// peer's refusal at the handshake (refusedAtHandshake). A message was
// failed dial_failed, its error blaming the peer's allowlist, and not
// sent on the new connection a dial of its own would have made.
//
// So the node's own dials of a peer take turns (dialTurns): each starts
// once the one before has returned, when the swarm's worker has let go
// of that one's connections. Other users of the host (the DHT) dial
// besides, so a dial that is still handed a connection closed before it
// began is made again, a few times at most, and then fails with
// errStaleConn, which blames nobody.

// errStaleConn fails a dial that go-libp2p kept answering with a
// connection closed before the dial began.
var errStaleConn = errors.New("go-libp2p returned a connection closed before the dial began")

// maxStaleDials bounds how many times dialPeer dials when each dial is
// answered with a closed connection another dial made. Each new dial
// lets the goroutine of that other dial, served already, return and let
// go; one starved for longer costs this dial a dial_failed, which the
// exchange handler retries.
const maxStaleDials = 3

// dialPeer connects to p at the addresses in the peerstore, unless a
// connection is up already, and returns the connection. It waits for the
// node's dial of p in progress, if any, to return first, or for ctx.
func (n *Node) dialPeer(ctx context.Context, p peer.ID) (network.Conn, error) {
	done, err := n.dialTurns.take(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("failed to dial: %w", err)
	}
	defer done()
	// Once the turn has come: a dial of p that failed while this one
	// waited has just set the backoff.
	n.clearBackoff(p)
	for attempt := 1; ; attempt++ {
		began := time.Now()
		c, err := n.host.Network().DialPeer(ctx, p)
		if err != nil {
			if ctx.Err() == nil {
				if err = n.DialError(p, err); errors.Is(err, ErrClosedAtHandshake) {
					return nil, err
				}
			}
			return nil, fmt.Errorf("failed to dial: %w", err)
		}
		if n.cfg.dialHook != nil {
			c = n.cfg.dialHook(c)
		}
		// A connection closed by now but opened after the dial began is
		// this dial's own: what it tells (a refusal, say) is the caller's
		// to judge. One opened before is another dial's, or one closed
		// since the swarm looked for a connection up: either way not the
		// connection this dial asked for.
		if !c.IsClosed() || !c.Stat().Opened.Before(began) {
			return c, nil
		}
		if attempt == maxStaleDials {
			return nil, fmt.Errorf("failed to dial: %w (%d times)", errStaleConn, attempt)
		}
	}
}

// dialTurns has the node's dials of each peer take turns.
type dialTurns struct {
	mu   sync.Mutex
	busy map[peer.ID]chan struct{} // closed when the dial in progress returns
}

// take waits until no dial of p by this node is in progress, or until
// ctx is done, and then marks one in progress until done is called.
func (t *dialTurns) take(ctx context.Context, p peer.ID) (done func(), err error) {
	for {
		t.mu.Lock()
		ended, busy := t.busy[p]
		if !busy {
			if t.busy == nil {
				t.busy = make(map[peer.ID]chan struct{})
			}
			mine := make(chan struct{})
			t.busy[p] = mine
			t.mu.Unlock()
			return func() {
				t.mu.Lock()
				delete(t.busy, p)
				t.mu.Unlock()
				close(mine)
			}, nil
		}
		t.mu.Unlock()
		select {
		case <-ended:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
