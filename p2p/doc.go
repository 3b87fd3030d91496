// Package p2p is the BitVMX operators' transport: a libp2p host restricted to
// TCP, Noise and yamux, admitting only allowlisted peers, rate limiting
// misbehaviour, and carrying acknowledged messages between them.
//
// The caller talks to a Node through three channels and never needs a
// goroutine of its own:
//
//   - Sender (caller -> node): Dial, SendMsg, DisconnectFrom.
//   - Receiver (node -> caller): Data, Status (the ack of a sent message),
//     Connected, Disconnected, ConnectionLimit, Error.
//   - Priority (node -> caller): Dropped, when a received message could not be
//     delivered because the Receiver buffer was full.
//
// Nothing is lost silently: every SendMsg gets exactly one Status, and every
// received message is either delivered on Receiver or reported on Priority
// (and its sender told "busy").
//
// The wire protocol is specified in docs/PROTOCOL.md; its schema is pb/message.proto.
package p2p
