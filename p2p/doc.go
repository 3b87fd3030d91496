// Package p2p is the BitVMX operators' transport: a libp2p host restricted to
// TCP, Noise and yamux, admitting only allowlisted peers, rate limiting
// misbehaviour, and carrying acknowledged messages between them.
//
// The caller talks to a Node through three channels and never needs a
// goroutine of its own:
//
//   - Sender (caller -> node): Dial, SendMsg, DisconnectFrom.
//   - Receiver (node -> caller): Data, Status (the ack of a sent message),
//     Connected, Disconnected, ConnectionLimit, Refused (inbound connections
//     the gater refused, also logged as warnings), Error.
//   - Priority (node -> caller): Dropped, when a received message could not be
//     delivered because the Receiver buffer was full.
//
// Config.Deliveries replaces Receiver with Deliveries, which carries the
// same events in the same order with Data and Status unboxed (a Delivery
// struct rather than an Event interface): an allocation less per message
// and per Status, for a caller that takes many (the handler). With a
// Config.Taker as well, the caller need not wait on that channel: the node
// tells the Taker when deliveries wait, and a stream's reader that has
// just delivered a message, or the Status an ack settled, hands it over by
// Taker.Take on its own goroutine, so that no goroutine wakes only to pass
// the message on.
//
// Nothing is lost silently: every SendMsg gets exactly one Status, and every
// received message is either delivered on Receiver or reported on Priority
// (and its sender told "busy").
//
// Node.Send is the same as writing to Sender, and faster for a SendMsg: it
// writes the message from the calling goroutine when the peer's stream can
// take it at once. Messages sent so while others of ours await their acks
// leave together, as Sender's do: the node's loop flushes them after it
// yields once. SendMsg.LazyAck lets the receiver hold the message's ack
// for up to its Config.AckDelay so that it leaves with the receiver's answer.
//
// The wire protocol (version 2: one stream per peer pair carrying messages
// and acks both ways) is specified in docs/PROTOCOL.md; its schema is
// pb/message.proto. The files follow it: stream.go holds a stream and ends
// it, stream_read.go reads it, settle.go waits for Config.Accept's
// verdicts, stream_write.go and stream_out.go write to it (stream_spill.go
// keeps a writer that may not wait from waiting on a peer that does not
// read), drain.go ends it without losing the acks it owes (DisconnectFrom,
// Close), sender.go picks the stream and dials (peer_closing.go keeps it
// off a connection the peer is closing),
// codec.go and frame.go put frames on the wire, buffers.go lends streams
// their buffers, deliveries.go feeds Receiver (or Deliveries).
//
// A stream borrows its 16 KiB read and write buffers from its node while it
// has bytes in them, and gives them back when it goes idle: an idle
// stream holds a 64-byte array to wait in, and the goroutine reading it.
//
// Operators behind NAT (relay.go, relay_state.go, relay_tracers.go,
// check.go): Config.Relay makes a node a circuit relay v2 for its
// allowlisted peers; Config.Relays names member relays the node keeps
// reservations on and dials through;
// Config.HolePunching upgrades relayed connections to direct ones (DCUtR).
// A relayed connection is gated by the relayed-connection policy (an
// IP-bound entry needs Relay set) and never charges an IP. Node.Check tests
// the ways to a peer; Node.RelayStatus and the RelayReservations, HolePunch
// and HolePunchReady events report the rest.
package p2p
