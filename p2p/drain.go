package p2p

import (
	"bufio"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Ending a peer's connections without losing the acks we owe it, for
// DisconnectFrom and Close (docs/PROTOCOL.md §5). Closing a connection at
// once would lose them twice over: acks still queued or held lazily by the
// node, and acks written to yamux, which sends asynchronously and drops
// what it has not yet sent when its session closes. So before a connection
// is closed each of its message streams is drained:
//
//  1. drain marks the stream and wakes its reader with a read deadline in
//     the past. From then on the reader delivers nothing it reads.
//  2. The reader settles the frames waiting for Config.Accept's verdicts
//     and writes every ack owed, lazy ones included.
//  3. If the peer is known to have read everything we wrote (our last
//     write was a Data frame it has acked, and no message of ours awaits
//     its ack), the stream ends at once: there is nothing to wait for.
//  4. Otherwise the reader closes its write half and reads on, for the
//     peer's acks of our messages (Data is ignored: not delivered, never
//     acked), until the peer closes its half too, which it does as soon as
//     its reader meets our end (§4.1), after the acks it owes: then our
//     acks have arrived. A peer that does not close is waited for at most
//     the drain's wait.
//  5. The stream ends gracefully (gone is closed), and the connections
//     that were open when the disconnection began are closed.
//
// Only those connections: one the peer opens meanwhile (it saw the old
// one close and dials again, often before our close has returned) is a
// new one, served as usual.

// errDraining ends a stream that a DisconnectFrom or Close drained.
var errDraining = errors.New("disconnecting from the peer")

// maxDrainWait bounds how long a drained stream waits for the peer to
// close its half: a conforming peer does so within a round trip of reading
// our end.
const maxDrainWait = time.Second

// drainWait is how long a drained stream waits for the peer's end.
func (n *Node) drainWait() time.Duration {
	if n.cfg.drainWait > 0 {
		return n.cfg.drainWait
	}
	return min(n.cfg.WriteTimeout, maxDrainWait)
}

// disconnect closes the connections to p open now (those opened before
// openedBefore, unless it is zero), once the acks this node
// owes p have reached it and nothing holds them (Node.Hold): each message
// stream on them is drained, then they close, without waiting for a peer that does not read or close
// longer than a write timeout and the drain's wait. Streams p opens on
// them meanwhile are ended before they are read (handleStream), and ours
// are not opened on them (peerSender.open). Its known addresses are kept, so a later
// SendMsg without an address redials.
func (n *Node) disconnect(p peer.ID, openedBefore time.Time) {
	conns := n.host.Network().ConnsToPeer(p)
	if !openedBefore.IsZero() {
		now := time.Now()
		conns = slices.DeleteFunc(conns, func(c network.Conn) bool {
			return !c.Stat().Opened.Before(openedBefore) || n.awaitsFirstStream(c, now)
		})
	}
	// The connections are marked closing before their streams are listed,
	// never after: a stream the peer opens between the two would be on no
	// list, served, and closed with its acks unwritten. Marked first, it
	// is either listed, or added after the listing and refused by
	// handleStream's second look, before anything on it is judged.
	n.draining.add(p, conns)
	if n.cfg.disconnectHook != nil {
		n.cfg.disconnectHook()
	}
	streams := slices.DeleteFunc(n.streams.of(p), func(st *msgStream) bool {
		return !slices.Contains(conns, st.s.Conn())
	})
	if len(streams) == 0 && !n.holds.held(p) {
		n.closeConns(p, conns)
		n.draining.remove(p, conns)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.draining.remove(p, conns)
		wait := n.drainWait()
		if !n.drainStreams(streams, wait, wait+n.cfg.WriteTimeout, n.ctx.Done()) {
			return
		}
		n.holds.wait(p, maxHoldWait, n.ctx.Done())
		n.closeConns(p, conns)
	}()
}

// awaitsFirstStream reports whether c is a connection the peer opened for
// work it has not begun: inbound, no message stream of the peer's on it
// yet, and younger than a dial (DialTimeout, which bounds the peer's
// connecting and opening its stream together, as ours does in openOnce).
// A closing for idleness (OpenedBefore) spares it as it spares a
// connection opened since: the peer may have opened it just before we
// found it idle, its first stream still on its way (on a loaded machine
// seconds later), and closing it would fail that stream as a refusal at
// the handshake, an attempt lost. Once older it is closed with the rest
// at the next closing, should its stream never come.
func (n *Node) awaitsFirstStream(c network.Conn, now time.Time) bool {
	st := c.Stat()
	return st.Direction == network.DirInbound && !n.conns.of(c).accepted.Load() &&
		now.Sub(st.Opened) < n.cfg.DialTimeout
}

// closeConns closes conns, p's connections.
func (n *Node) closeConns(p peer.ID, conns []network.Conn) {
	var errs []error
	for _, c := range conns {
		n.conns.of(c).closedHere.Store(true)
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		n.events.Push(Error{Peer: p, Err: fmt.Errorf("disconnect: %w", err)}, false)
	}
}

// drainStreams drains streams, each waiting at most wait for the peer to
// close its half, and waits until they have ended, for at most timeout, or
// until stop is closed. It reports false if it was stopped.
func (n *Node) drainStreams(streams []*msgStream, wait, timeout time.Duration, stop <-chan struct{}) bool {
	if len(streams) == 0 {
		return true
	}
	for _, st := range streams {
		st.drain(wait)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, st := range streams {
		select {
		case <-st.gone:
		case <-deadline.C:
			return true
		case <-stop:
			return false
		}
	}
	return true
}

// drain asks the stream's reader to end it gracefully (above), waiting at
// most wait for the peer to close its half once our acks are out. It
// returns at once; gone is closed when the stream has ended.
func (st *msgStream) drain(wait time.Duration) {
	st.drainMu.Lock()
	defer st.drainMu.Unlock()
	if st.ended() || st.draining.Load() {
		return
	}
	st.drainWait = wait
	// The flag first: a reader that the deadline wakes finds it set.
	st.draining.Store(true)
	if ps, ok := st.s.(*proposedStream); ok && !ps.answered.Load() && st.awaitsAcks() {
		// The reader waits for the answer to our proposal (stream_open.go),
		// and a deadline that fails that read fails it for good
		// (go-multistream keeps the error): the acks of our messages could
		// no longer be read. Nothing can be owed to the peer before its
		// answer, so the reader need not be woken: the answer and the acks
		// get the drain's wait, and the reader, reading them, finds the
		// flag set.
		_ = st.s.SetReadDeadline(time.Now().Add(wait))
		return
	}
	_ = st.s.SetReadDeadline(time.Unix(1, 0))
}

// finishDrain is the reader's part of a drain, steps 2 to 5.
func (st *msgStream) finishDrain(br *bufio.Reader, maxFrame int) {
	st.stopSettler()
	st.wmu.Lock()
	st.writeAcksLocked()
	err := st.flushLocked()
	st.wclosed = true
	unconfirmed := st.ackTail
	st.wmu.Unlock()
	if err != nil {
		st.fail(ReasonConnectionLost, err)
		return
	}
	if !unconfirmed && !st.awaitsAcks() {
		st.end(ReasonConnectionLost, errDraining, true)
		return
	}
	if err := st.s.CloseWrite(); err != nil {
		st.fail(ReasonConnectionLost, err)
		return
	}
	// After drain's own deadline, which the lock orders before this one.
	st.drainMu.Lock()
	_ = st.s.SetReadDeadline(time.Now().Add(st.drainWait))
	st.drainMu.Unlock()
	var f frame
	for {
		if err := readFrame(br, fixedDeadline{}, maxFrame, 0, &f); err != nil {
			break // the peer's end (or the wait's, or a reset)
		}
		if f.kind == frameKindAck && !st.onAck(&f) {
			return
		}
	}
	st.end(ReasonConnectionLost, errDraining, true)
}

// awaitsAcks reports whether a message of ours awaits the peer's ack.
func (st *msgStream) awaitsAcks() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.head < len(st.pending)
}

// fixedDeadline keeps readFrame from timing a frame: the read deadline a
// drain set bounds the whole drain.
type fixedDeadline struct{}

func (fixedDeadline) watch(time.Duration) {}
func (fixedDeadline) unwatch()            {}

// drainSet tracks, per peer, the connections DisconnectFroms are closing.
type drainSet struct {
	mu    sync.Mutex
	peers map[peer.ID]*draining
}

type draining struct {
	n     int                  // disconnections under way
	conns map[network.Conn]int // the connections they close, with how many close each
	done  chan struct{}        // closed when n drops to 0
}

func (d *drainSet) add(p peer.ID, conns []network.Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.peers == nil {
		d.peers = make(map[peer.ID]*draining)
	}
	e := d.peers[p]
	if e == nil {
		e = &draining{conns: make(map[network.Conn]int), done: make(chan struct{})}
		d.peers[p] = e
	}
	e.n++
	for _, c := range conns {
		e.conns[c]++
	}
}

func (d *drainSet) remove(p peer.ID, conns []network.Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.peers[p]
	if e == nil {
		return
	}
	for _, c := range conns {
		if e.conns[c]--; e.conns[c] <= 0 {
			delete(e.conns, c)
		}
	}
	if e.n--; e.n <= 0 {
		close(e.done)
		delete(d.peers, p)
	}
}

// closing reports whether c, a connection to p, is being closed.
func (d *drainSet) closing(p peer.ID, c network.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.peers[p]
	return e != nil && e.conns[c] > 0
}

// wait returns once no DisconnectFrom is closing connections to p, or
// stop is closed.
func (d *drainSet) wait(p peer.ID, stop <-chan struct{}) {
	d.mu.Lock()
	e := d.peers[p]
	d.mu.Unlock()
	if e == nil {
		return
	}
	select {
	case <-e.done:
	case <-stop:
	}
}
