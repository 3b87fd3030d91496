// Package handler is the BitVMX Multi-Exchange Handler: request/reply
// exchanges between operators, over a p2p node that it creates and owns,
// with acknowledgments, resends, redials, queues, timeouts and
// disconnections handled for the application.
//
// # Using it
//
// The application needs no goroutine of its own. New starts a handler from
// a listen address, an identity key and an allowlist; then:
//
//   - Request(peer, addr, msg) dials the peer if needed, sends a request and
//     returns its ExchangeID at once. The reply arrives as a Reply event,
//     and the exchange's end as an Outcome, which carries the Reply too.
//   - Response(peer, exchange, msg) answers a Request event.
//   - Send(peer, addr, msg) sends a one-way, acknowledged message.
//   - CheckReceive polls for the next event; Events, Outcomes and Priority
//     are the channels to select on.
//   - Ack(peer, exchange) tells a durable handler that a Message was
//     handled; AckOutcome(exchange), with Config.AckOutcomes, that the
//     application has dealt with the Outcome of its own exchange.
//   - Snapshot copies the handler's load (exchanges active and queued, per
//     peer, and when each peer's last exchange ended) for status displays.
//   - Close waits for the exchanges in flight, up to Config.CloseTimeout,
//     then fails them with ReasonClosed (with a store: leaves them, and
//     the requests received and not yet answered, to resume at the next
//     start, without an Outcome) and stops everything.
//
// # Six channels
//
// The handler sits on the node's three channels (Sender, Deliveries: the
// Receiver's events with Data and Status unboxed, and Priority) and gives
// the application three of its own:
//
//   - Events: Request, Reply and Message, the data peers sent.
//   - Outcomes: one Outcome per exchange, dialed or answered, and Error for
//     problems not tied to an exchange (a peer breaking the protocol).
//   - Priority: Dropped and ConnectionLimit, alerts passed through from the
//     node.
//
// Each channel keeps its own order; between channels there is none that
// a reader can rely on. A request's Reply is handed out before its
// Outcome, but a select over Events and Outcomes (or CheckReceive, while
// the Reply still waits behind events the application has not read) may
// take the Outcome first. An OK request's Outcome carries its Reply
// (Outcome.Reply, the same pointer as the event), so an application that
// needs the reply with the Outcome takes it from there. One that matches
// them by ExchangeID instead, waiting for the Reply of an OK Outcome on
// Events, must stop waiting when Events closes: Close hands each channel
// only what still fits in it, and drops a Reply still queued behind a full
// Events channel while its Outcome may be out already. (The p2pnode CLI's
// run and demo print such an Outcome once its Reply is printed; run prints
// the Outcome's Reply for one whose Reply never came before Events closed.)
//
// Everything else the node reports (acks, connections coming and going) is
// the handler's business, not the application's; Config.Observe lets an
// application watch it anyway (the p2pnode CLI prints connections).
//
// # Exchanges
//
// An exchange is a finite state machine; docs/handler-fsm.md draws it and
// lists every transition. The dialer's ideal path is dial, send the
// request, await its ack, await the reply, ack the reply (automatically),
// done, disconnect. The responder's is: request received (acked
// automatically), delivered to the application, Response, await the ack of
// the reply, done. Every error path ends in StateFailed with a Reason:
// dial failure, disconnection mid-exchange, a refused ack, ack timeout,
// reply timeout, a request the peer left unanswered, an unexpected message, a peer cut off by the rate limiter,
// or the handler closing.
//
// A message refused "busy", lost with its connection, or not sent because a
// dial failed is resent with exponential backoff and jitter, up to
// Config.MaxAttempts sends. A resent request carries the same ExchangeID,
// and the responder remembers the IDs it has seen (for Config.DedupeTTL),
// so its application does not see a resent request again. A request whose
// connection drops while it awaits its reply is resent too: the responder
// needs a connection to reply on. A resend of a request the responder's
// application left unanswered is refused: the exchange ends at once with
// ReasonUnanswered (ErrUnanswered), since no reply will ever come.
//
// # Restarts
//
// Without a store the handler is ephemeral: a restart forgets every
// exchange in flight, and the dedupe memory with them. With Config.Store
// (package store, docs/durability.md) it is durable: Request and Send
// return once the exchange is on disk, and a handler started later on the
// same store resumes it (Outcome.Resumed); a received request or message is
// on disk before its sender hears OK, and is delivered again after a
// restart (Request.Redelivered, Message.Redelivered) until the application
// has handled it with Response or Ack; a resent request that was answered
// gets the stored reply, with no second Outcome on the responder's side
// (its one Outcome, from the exchange that answered, may say the reply did
// not get through then, and the dialer's that it did later); exchanges
// that fail finally are kept as dead
// letters. Every Request and Send ends in exactly one Outcome, across any
// number of restarts of either side; with Config.AckOutcomes that Outcome
// is kept until AckOutcome, and handed out again (Outcome.Redelivered) if
// the process dies before.
//
// A reply to an exchange this process does not know (its previous life's,
// or another process's that shares its key) is refused with the ack reason
// unknown_exchange: no error, no fault. Replies go back on the stream
// their request came on.
//
// # Peers and connections
//
// By default the handler runs one exchange at a time with each peer (more
// with Config.MaxConcurrentPerPeer) and queues the rest, in order: Request
// never fails because a peer is busy. Each exchange gets its own
// connection, closed when it completes; Config.KeepConnection keeps it for
// later exchanges instead, until Config.IdleTimeout. The responder closes
// the connection, because it is the last to learn that the exchange
// completed, from the dialer's node's ack of the reply. The dialer waits
// Config.Linger for the close, then closes itself; its node writes the
// acks it owes before any close (p2p.DisconnectFrom), so no ack is lost
// either way.
//
// A peer that never acknowledges is judged faulty: reported as an Error,
// disconnected, its active exchanges failed. A payload on the handler's
// channel that is not a valid envelope is refused malformed in its ack by
// the node, before anything is delivered, and costs the peer one token of
// its misbehaviour budget in the node's rate limiter; an ack out of
// protocol fails the exchange its message carried and costs one too. Both
// leave the connection up. Data on another channel than Config.Channel,
// which nothing on the handler's node reads, costs an unauthorized token
// and is reported as an Error; Errors about one peer that wait for the
// application fold into one (Error.Repeats), so that they cannot crowd the
// others out of Outcomes. With a store, a resend of an answered request
// gets the stored reply again, and past Config.MaxAttempts of those for
// one exchange each costs a protocol_violation token.
//
// Without an address, Request and Send use the peer's connection, the last
// address the handler was given for it, or Config.Resolver (a DHT), which
// is asked once more when a dial to a cached or resolved address fails.
//
// # Backpressure
//
// The handler's loop never blocks on the application: its channels are fed
// from queues. Data the node has acknowledged cannot be refused any more,
// so the handler takes it from the node only while the application keeps
// up: past Config.MaxBacklog events waiting behind a full Events channel it
// stops reading the node, whose own buffer then fills, and the node
// answers its peers "busy". They resend later. Backpressure thus reaches
// the senders through the p2p layer, the one place it can be expressed
// without losing anything. With a Config.Store, what the inbox holds
// already is not refused: it is delivered from the store once the
// application has room, and a peer hears "busy" only past
// Config.MaxInboxPerPeer of them, or Config.MaxInboxBytesPerPeer of their
// payloads (counting the replies that await the peer's ack; 64 MiB, or half
// of MaxInboxBytes when that is less), or when every peer's together pass
// Config.MaxInboxBytes (a quarter of the store's cap by default) and it
// holds some already. A reply to a request of ours still
// running is never refused busy either: it is held in memory (one per
// request) until the application has room, so that the responder's
// Outcome and ours agree. Meanwhile acks and outcomes of the handler's own
// exchanges wait too; an application that reads its events keeps them
// flowing.
//
// # Wire format
//
// Each handler message is one p2p message on channel Config.Channel
// (default 0, both the frame's channel and from_channel) whose payload is
// a pb.Envelope: a kind (request, reply, message), the exchange ID and the
// application's bytes. See pb/exchange.proto, docs/handler-fsm.md and
// docs/PROTOCOL.md §8.
//
// # Goroutines
//
// One mutex guards every exchange and peer. One goroutine, the loop, takes
// the node's events, the Resolver's answers and the timers (a heap it
// serves itself) and applies each under it; Request, Send and Response
// apply themselves under it from the caller's goroutine, and a stream's
// reader applies the messages it has just read when the mutex is free,
// which saves a goroutine switch each. The node's events are read from
// its one channel under the mutex only, so none overtakes another. The handler also runs a goroutine per application
// channel (feeding it) and one per Resolver call. Close returns once all of
// them, and the node's, have ended.
//
// # Costs
//
// An exchange over a kept connection (request, reply, both acked, the ack
// of the request riding with the reply) makes 8 heap allocations, both
// ends together; a bare go-libp2p echo round trip makes 4, Noise's nonces,
// which the exchange makes too. The other 4: the two payloads handed to
// the applications (theirs to keep) and the two exchanges' state. The
// events given to the applications (Request, Reply, an Outcome each side)
// live in their exchange's state, which is why they are pointers; the
// nodes give the handlers their Data and Status unboxed
// (p2p.Config.Deliveries); and envelopes up to 64 KiB come from the
// buffer pool that go-libp2p's yamux and Noise use, and go back to it when
// the exchange is done after one acked send (a durable handler allocates
// its own: the store may hold them).
// TestExchangeAllocations keeps the count from growing.
//
// Calls that several goroutines make at once share writes: a Request, Send
// or Response whose call finds another waiting for the handler leaves its
// message in the stream's buffer (p2p.SendMsg.Defer) for the last call of
// the run to flush, at most 16 of them. So does a call likely to be
// followed by others: a Request or Send to a peer with another exchange
// of ours out, or any call made while requests the handler delivered
// still await their answers (an application making or answering many
// exchanges at once). The loop flushes it, once the goroutines then ready
// to run, likely the application's next calls, have run
// (runtime.Gosched), and never later, so a request the application keeps
// holds no reply to another. With 64 exchanges in flight on one
// connection an exchange then makes about 0.2 writes, both ends, instead
// of 1.3-1.9 (BenchmarkKeptConn64's writes/op), at a third less CPU and
// an allocation less per write saved (Noise's nonce); one exchange at a
// time per peer is unchanged.
//
// Each message wakes four goroutines on its way, where a bare stream's
// wakes three (the sender's yamux writer, the receiver's yamux reader, the
// receiver's application): ours adds the receiver's stream reader (p2p),
// which applies the message to the handler itself (p2p.Config.Taker)
// and hands the application its event. The handler's loop wakes for a
// message only when the reader finds the handler busy (another goroutine
// holds its lock: it then rings the loop), with an Observe hook (which
// the loop calls first, in order), while the application is behind, or
// when the message's verdict waited for the store (a durable handler's
// settler hands it over), and, with many exchanges under way, once per
// batch of calls whose messages it flushes (above). The application's
// calls, and the writes they make, run on its own goroutine. So an exchange over a kept connection
// costs about nine wakeups where a bare round trip costs six (counted in
// a runtime trace: 8.9 against 5.9; 10.9 when the loop took every
// message).
package handler
