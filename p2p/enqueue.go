package p2p

import (
	"context"
	"slices"
	"sync"

	ma "github.com/multiformats/go-multiaddr"
)

// Send queues cmd like writing to Sender, but gives up when ctx is done or
// the node is closed, instead of blocking.
//
// It is also the fast way to send: a SendMsg to a peer with an open stream
// is written from the calling goroutine when that cannot block and nothing
// given to Send before it still waits for the node, saving a handoff to
// the node's goroutine. Commands given to Send keep their order with one
// another; with commands written straight to Sender they have none.
//
// A message written the fast way leaves at once when it is the only one
// of ours awaiting its ack on the stream. Written while others await
// theirs, it is flushed by the node's goroutine after that goroutine has
// yielded once, so that the messages sent meanwhile (a caller answering
// each Status with a new message gets its Statuses in batches) leave in
// the same write. SendMsg.Defer leaves the flush to the caller instead.
//
// A SendMsg that Send accepted (nil) gets its Status even if Close runs
// meanwhile; one it refused (ErrClosed) gets none.
func (n *Node) Send(ctx context.Context, cmd Command) error {
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	if m, ok := cmd.(SendMsg); ok && n.sendDirect(m) {
		return nil
	}
	return n.enqueue(ctx, cmd)
}

// SendMessage is Send for one message. It saves Send's caller the boxing of
// m into a Command (an allocation) when m takes the fast way.
func (n *Node) SendMessage(ctx context.Context, m SendMsg) error {
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	if n.sendDirect(m) {
		return nil
	}
	return n.enqueue(ctx, m)
}

// enqueue hands cmd to the node loop, as Send's slow way. The select may
// take the Sender channel even once the node is closed (Go picks among
// ready cases at random): only Close's barrier (enqueueMu) makes sure
// failUnhandled finds what it left there.
func (n *Node) enqueue(ctx context.Context, cmd Command) error {
	n.enqueueMu.RLock()
	defer n.enqueueMu.RUnlock()
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	if n.cfg.enqueueHook != nil {
		n.cfg.enqueueHook()
	}
	n.viaSend.Add(1)
	select {
	case n.sender <- sentCmd{cmd}:
		return nil
	case <-n.ctx.Done():
		n.viaSend.Add(-1)
		return ErrClosed
	case <-ctx.Done():
		n.viaSend.Add(-1)
		return ctx.Err()
	}
}

// sentCmd is a command given to Send: the node loop counts it off viaSend
// once handled, so that Send's fast path never overtakes it.
type sentCmd struct{ Command }

// sendDirect writes c from the calling goroutine and flushes it (unless
// c.Defer: then Flush does), if the node loop has nothing of Send's
// pending and the peer's stream can take c at once. Anything unusual
// (errors to report, dialing, queueing) is left to the node loop.
func (n *Node) sendDirect(c SendMsg) bool {
	if n.viaSend.Load() != 0 || len(c.Data) > n.cfg.MaxMessageSize || !n.cfg.Allowlist.Contains(c.Peer) {
		return false
	}
	n.sendersMu.Lock()
	ps := n.senders[c.Peer]
	n.sendersMu.Unlock()
	if ps == nil {
		return false
	}
	// The stream is open, so c.Addr is not needed; but one naming a peer
	// (/p2p/...) must be checked against c.Peer, which the node loop does.
	if len(c.Addr) > 0 && c.Addr[len(c.Addr)-1].Code() == ma.P_P2P {
		return false
	}
	m := outMsg{SendMsg: c}
	st := ps.trySend(&m, !c.Defer)
	if st == nil {
		return false
	}
	if c.Defer {
		n.deferred.add(st)
	}
	return true
}

// flushLater leaves the flush of st's buffer, which holds a message that
// Send wrote from its caller's goroutine, to the node's loop. Send does
// that when other messages of ours await their acks on st: their Statuses
// tend to come together, and the sends they prompt then share one write,
// where flushing each at once would cost a write, and a wakeup of the
// connection's writer, per message (at 64 in flight, about a quarter of
// the rate). One message alone in flight is flushed at once.
func (n *Node) flushLater(st *msgStream) {
	n.later.add(st)
	select {
	case n.flushBell <- struct{}{}:
	default: // rung already, and the loop flushes after taking the ring
	}
}

// Flush writes out the messages sent with SendMsg.Defer since the last
// Flush. It does not wait: a stream whose writer is busy is flushed by
// that writer once it is done.
func (n *Node) Flush() {
	n.deferred.flush()
}

// deferredStreams are the streams holding messages sent with
// SendMsg.Defer, not flushed yet.
type deferredStreams struct {
	mu  sync.Mutex
	sts []*msgStream
}

func (d *deferredStreams) add(st *msgStream) {
	d.mu.Lock()
	if !slices.Contains(d.sts, st) {
		d.sts = append(d.sts, st)
	}
	d.mu.Unlock()
}

func (d *deferredStreams) flush() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, st := range d.sts {
		st.requestFlush()
	}
	// Cleared, not only cut: the array would keep ended streams, and
	// what they hold, until overwritten.
	clear(d.sts)
	d.sts = d.sts[:0]
}
