package p2p

import (
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// Command is what the caller sends on a Node's Sender channel: Dial,
// SendMsg or DisconnectFrom.
type Command interface{ command() }

// Dial connects to Peer at Addr. Success shows as a Connected event; failure
// as an Error event.
type Dial struct {
	Peer peer.ID
	Addr ma.Multiaddr
}

// SendMsg sends Data to Peer, dialing Addr first when not connected (Addr may
// be nil for a connected peer). It is answered by exactly one Status carrying
// ID, which the caller chooses to match the two.
type SendMsg struct {
	Peer peer.ID
	Addr ma.Multiaddr
	ID   uint64
	// Channel is the destination channel on the peer; FromChannel the
	// sending component's. Both default to 0 and are checked against the
	// receiver's routing table.
	Channel     uint32
	FromChannel uint32
	// Data must not change until the message's Status. Once a Status
	// that answers the peer's ack (OK or a refusal) is reported, the node
	// holds no reference to Data, and the caller may reuse it: such a
	// Status waits until the node has finished writing Data, even for a
	// peer that acks before it has read, unless the node closes first
	// (then it comes once the stream is reset, which stops the write). A
	// Status of a failure (a lost connection, an ack timeout) may come
	// while a write of Data is still unwinding.
	Data []byte
	// LazyAck lets the receiver hold its ack for up to its AckDelay, so
	// that the ack can travel with the receiver's next message to this
	// node instead of in a write of its own. Set it when the receiver is
	// expected to answer soon (a request), or when the Status is not
	// waited on; the Status may then come up to the peer's AckDelay
	// later. Refusals are never held.
	LazyAck bool
	// Via, when it is the Origin of a message received from Peer, sends on
	// the stream that message arrived on, while that stream lives: an
	// answer then reaches the process that asked, even when two processes
	// share Peer's key. Otherwise the message goes as usual.
	Via Origin
	// Defer lets a message that Send writes from the calling goroutine
	// (its fast way) stay in the stream's buffer rather than be flushed at
	// once, so that the messages sent after it leave in the same write.
	// The caller must call Node.Flush once it has sent them: until then,
	// or until something else flushes the stream, the message is not on
	// the wire. A message that goes through the node's loop leaves as
	// usual.
	Defer bool
}

// DisconnectFrom closes every connection to Peer open when the node
// handles it (or, with OpenedBefore, those of them opened before it).
// With no Peer it disconnects from all peers and stops the node, like
// Close.
//
// The acks this node owes Peer go out first: from the command on, nothing
// more Peer sends is delivered; the messages already delivered (and those
// whose Config.Accept verdict was pending) are acked, lazy acks included,
// each message stream is closed after its acks, and the connections close
// once Peer has closed its end of each stream, having read them
// (docs/PROTOCOL.md §5). A message this node delivered is therefore never
// reported connection_lost to its sender because of this close. Peer's
// messages not yet read fail there as connection_lost (not delivered: a
// resend is safe); this node's messages awaiting Peer's acks get them if
// Peer sends them before its end, and connection_lost otherwise (their fate
// is unknown). A stream with nothing owed either way closes at once; a Peer
// that does not end its half is waited for at most a second (or
// Config.WriteTimeout, if shorter). Streams Peer opens on those connections
// meanwhile are reset; a connection it opens meanwhile is left open.
//
// Seen from Peer (a node of this package), a message that meets such a
// close fails connection_lost once, and its resend waits for the
// connection to go and goes on a new one (docs/PROTOCOL.md §5, "A
// connection the peer is closing").
type DisconnectFrom struct {
	Peer peer.ID
	// OpenedBefore, when set, spares the connections opened at or after
	// it (as this node's clock records their opening): a caller closing
	// Peer for idleness passes the moment Peer became idle, so that a
	// connection Peer opened since, for new work, is not cut before its
	// first stream is answered (Peer would take that for a refusal). For
	// the same reason it spares a connection Peer opened less than
	// Config.DialTimeout ago and has opened no message stream on yet: its
	// first stream may be on its way. Zero closes every connection.
	// Ignored without Peer.
	OpenedBefore time.Time
}

func (Dial) command()           {}
func (SendMsg) command()        {}
func (DisconnectFrom) command() {}

// Event is what a Node delivers on its Receiver and Priority channels.
type Event interface{ event() }

// Data is a message received from a peer. From is the Noise-authenticated
// identity of the sender; nothing in the message can claim otherwise.
type Data struct {
	From        peer.ID
	Channel     uint32
	FromChannel uint32
	Bytes       []byte
	// Origin is the stream the message arrived on, for SendMsg.Via.
	Origin Origin
}

// Origin identifies the stream a message arrived on. The zero Origin is
// none.
type Origin struct{ st *msgStream }

// Status is the outcome of one SendMsg: OK when the peer acknowledged
// delivery to its application, otherwise a Reason (and Err with detail, when
// the failure was local).
type Status struct {
	Peer   peer.ID
	MsgID  uint64
	OK     bool
	Reason Reason
	Err    error
}

// Connected reports the first connection to a peer.
type Connected struct {
	Peer    peer.ID
	Addr    ma.Multiaddr
	Inbound bool
	// Relayed says the connection goes through a circuit relay (Addr
	// holds /p2p-circuit); a later direct one (a hole punch) raises no
	// new Connected: Node.ConnectedPeers says which kinds are open.
	Relayed bool
}

// Disconnected reports that the last connection to a peer closed.
type Disconnected struct {
	Peer peer.ID
}

// ConnectionLimit reports a peer or an IP whose misbehaviour budget ran out:
// it was disconnected and is refused until Until.
type ConnectionLimit struct {
	Peer   peer.ID    // empty when the limit is on an IP
	IP     netip.Addr // invalid when the limit is on a peer
	Reason ratelimit.Reason
	Until  time.Time
}

// Error reports a failure not tied to one sent message: a failed Dial, a
// message the routing table refused, an allowlist reload that did not parse.
type Error struct {
	Peer peer.ID
	Err  error
}

// Dropped is delivered on the Priority channel when messages from Peer could
// not be delivered because the Receiver buffer was full. The sender was
// answered ReasonBusy. Count says how many messages this event stands for;
// MsgID is the wire ID of the last one.
type Dropped struct {
	Peer  peer.ID
	MsgID uint64
	Count uint64
}

func (Data) event()            {}
func (Status) event()          {}
func (Connected) event()       {}
func (Disconnected) event()    {}
func (ConnectionLimit) event() {}
func (Error) event()           {}
func (Dropped) event()         {}
