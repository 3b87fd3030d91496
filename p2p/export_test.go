package p2p

import (
	"bufio"
	"bytes"
	"runtime"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// WithDrainWait sets how long a disconnection waits for the peer to close
// its half of a stream, in place of the default (drain.go): tests make it
// long, so that a drain cannot end by its timeout before they are done.
func WithDrainWait(d time.Duration) func(*Config) {
	return func(c *Config) { c.drainWait = d }
}

// WithSendCloseHooks stops the node at the two sides of the race between
// Send and Close: enqueue runs in Send's slow way between its closed check
// and its handoff to the node loop, barrier in Close just before Close
// waits for those handoffs.
func WithSendCloseHooks(enqueue, barrier func()) func(*Config) {
	return func(c *Config) { c.enqueueHook, c.closeBarrierHook = enqueue, barrier }
}

// WithFlushLaterHook has f run in the node loop each time it is about to
// flush the messages Send left for it (flushLater): a test holds the loop
// there to see them still buffered.
func WithFlushLaterHook(f func()) func(*Config) {
	return func(c *Config) { c.flushLaterHook = f }
}

// SaveKeyHooked is SaveKey calling beforeSync once the key's bytes are
// written under the temporary name, before they are synced; an error from
// it fails the save as a failed write would.
func SaveKeyHooked(path string, k crypto.PrivKey, beforeSync func() error) error {
	return saveKey(path, k, beforeSync)
}

// WithDisconnectHook has f run inside each DisconnectFrom between marking
// the peer's connections closing and taking the list of its streams to
// drain: a test opens a stream there, in what was once a window in which
// it was neither drained nor refused.
func WithDisconnectHook(f func()) func(*Config) {
	return func(c *Config) { c.disconnectHook = f }
}

// WithStreamAddedHook has f run in the handling of each inbound stream
// between its addition to the node's set of streams and the second look
// at whether its connection is closing: a test writes to the stream and
// marks the connection closing there.
func WithStreamAddedHook(f func()) func(*Config) {
	return func(c *Config) { c.streamAddedHook = f }
}

// WithEndHook has f run as each stream's end begins, in the goroutine
// ending it (for an inbound stream's reader, one of go-libp2p's), before
// any of the end's work: inbound says whether the peer opened the stream.
func WithEndHook(f func(inbound bool)) func(*Config) {
	return func(c *Config) { c.endHook = f }
}

// WithCloseWaitHook has f run in Close each time, having failed a
// stream, it is about to wait for that stream's end to finish.
func WithCloseWaitHook(f func()) func(*Config) {
	return func(c *Config) { c.closeWaitHook = f }
}

// WithCloseDrainedHook has f run in Close once the streams it listed
// are drained, before it cancels the node and closes its host: a test
// opens a stream there, one that Close's drain did not list.
func WithCloseDrainedHook(f func()) func(*Config) {
	return func(c *Config) { c.closeDrainedHook = f }
}

// WithOpenHook has f run each time the node is about to open a message
// stream to a peer, once no DisconnectFrom is closing the connections to
// it: a test disconnects the peer there.
func WithOpenHook(f func()) func(*Config) {
	return func(c *Config) { c.openHook = f }
}

// WithPeerClosingHook has f run each time the node is about to wait, before
// opening a message stream, for a connection the peer seems to be closing
// to go: a test lets the peer close it there.
func WithPeerClosingHook(f func()) func(*Config) {
	return func(c *Config) { c.peerClosingHook = f }
}

// WithOpenedStreamHooks stops the node in the streams it opens: write
// runs before each write to one (the first carries the proposal of the
// protocol and the first frame), read in the stream's reader once it has
// read the peer's answer to the proposal (err nil) and after each read
// that failed (err), before the reader sees either. A test holds the
// writer and the reader there, to order which meets a closed connection
// first.
func WithOpenedStreamHooks(write func(), read func(err error)) func(*Config) {
	return func(c *Config) { c.writeHook, c.readHook = write, read }
}

// WithOpenedHook has f run each time the node has opened a stream for a
// queued message, before it writes the message: a test closes the
// connection there.
func WithOpenedHook(f func()) func(*Config) {
	return func(c *Config) { c.openedHook = f }
}

// EncodeDataFrame is what the node writes for one Data frame, length
// prefix included.
func EncodeDataFrame(id uint64, channel, from uint32, lazy bool, payload []byte) []byte {
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	if err := writeDataFrame(bw, id, channel, from, lazy, payload); err != nil {
		panic(err)
	}
	bw.Flush()
	return b.Bytes()
}

// EncodeAckFrame is what the node writes for one Ack frame, length prefix
// included.
func EncodeAckFrame(id uint64, reason pb.Reason) []byte {
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	if err := writeAckFrame(bw, id, reason); err != nil {
		panic(err)
	}
	bw.Flush()
	return b.Bytes()
}

// StreamsOf returns, for each open message stream of n, a channel closed
// once the stream has ended and one closed once the garbage collector has
// freed it. Neither keeps the stream.
func StreamsOf(n *Node) (gone, freed []<-chan struct{}) {
	for _, st := range n.streams.all() {
		gone = append(gone, st.gone)
		f := make(chan struct{})
		runtime.AddCleanup(st, func(f chan struct{}) { close(f) }, f)
		freed = append(freed, f)
	}
	return gone, freed
}

// WithRefusedHook has f run in the reader of a stream whose peer answered
// a frame with an id-0 ack, once that frame's Status is out and before
// the stream ends: a test sends its next message there.
func WithRefusedHook(f func()) func(*Config) {
	return func(c *Config) { c.refusedHook = f }
}

// WithDialHook has f look at, and maybe replace, the connection each of
// the node's dials got from go-libp2p: a test hands back a closed one, as
// go-libp2p's dial worker can (dial.go).
func WithDialHook(f func(network.Conn) network.Conn) func(*Config) {
	return func(c *Config) { c.dialHook = f }
}

// ErrStaleConn fails a dial answered each time with a connection closed
// before it began.
var ErrStaleConn = errStaleConn

// DeclineAllowance is how many declined handshakes per source IP cost a
// DeclinedHandshake before they cost a FailedHandshake (handshake.go).
const DeclineAllowance = declineAllowance

// DeclineWithin is how soon after the node's key a hang-up must come to
// count as a decline.
const DeclineWithin = declineWithin

// WithHandshakeClock has the inbound handshake guard read now in place of
// time.Now: a test moves it past DeclineWithin instead of stalling.
func WithHandshakeClock(now func() time.Time) func(*Config) {
	return func(c *Config) { c.handshakeNow = now }
}

// BufferedTo is how many bytes n's stream to p holds unflushed, 0 without
// one.
func BufferedTo(n *Node, p peer.ID) int {
	n.sendersMu.Lock()
	ps := n.senders[p]
	n.sendersMu.Unlock()
	if ps == nil {
		return 0
	}
	ps.mu.Lock()
	st := ps.st
	ps.mu.Unlock()
	if st == nil {
		return 0
	}
	st.wmu.Lock()
	defer st.unlockW()
	if st.bw == nil {
		return 0
	}
	return st.bw.Buffered()
}
