package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/dht"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// command carries out one parsed stdin command and reports whether to go
// on (false once the node is gone).
func (r *runner) command(cmd any) bool {
	switch c := cmd.(type) {
	case p2p.SendMsg:
		if c.Channel != 0 || c.FromChannel != 0 {
			r.out.emit(p2p.Status{Peer: c.Peer, MsgID: c.ID, Reason: p2p.ReasonRejected,
				Err: errors.New(`run sends through the exchange handler, on channel 0: "channel" and "from_channel" are not supported`)})
			return true
		}
		// The id travels with the exchange as its tag, stored with it:
		// the events of an exchange resumed after a restart carry it too.
		if _, err := r.h.Send(c.Peer, c.Addr, c.Data, stdinTag(c.ID)); err != nil {
			r.out.emit(refusedStatus(c.Peer, c.ID, err))
			return !errors.Is(err, handler.ErrClosed)
		}
	case requestCmd:
		if _, err := r.h.Request(c.Peer, c.Addr, c.Data, stdinTag(c.ID)); err != nil {
			r.out.emit(requestRefusedEvent{Peer: c.Peer, ID: c.ID, Err: fmt.Errorf("request %d: %w", c.ID, err)})
			return !errors.Is(err, handler.ErrClosed)
		}
	case respondCmd:
		if err := r.h.Response(c.Peer, c.Exchange, c.Data); err != nil {
			r.out.emit(p2p.Error{Peer: c.Peer, Err: fmt.Errorf("respond %s: %w", c.Exchange, err)})
			return !errors.Is(err, handler.ErrClosed)
		}
	case p2p.Command:
		// dial and disconnect go to the node itself. The handler sees the
		// connection come and go like any other; one without an exchange
		// is closed after the idle timeout. The node drains its Sender
		// without blocking on anyone, so this returns promptly.
		if err := r.node.Send(context.Background(), c); err != nil {
			r.log.Warn("node closed: stopping", zap.Error(err))
			return false
		}
	}
	return true
}

// handlerEvent prints one event of the handler's channels.
func (r *runner) handlerEvent(ev handler.Event) {
	switch e := ev.(type) {
	case *handler.Message:
		// Printed, then acknowledged: with a store, a message is delivered
		// again after a restart until its Ack is on disk, so a crash
		// between the two prints it again (marked redelivered) rather than
		// never. Without a store Ack does nothing.
		if err := r.out.print(e); err != nil {
			// Not printed, so not handled: the next run on the data
			// directory delivers it again.
			r.notPrinted(err)
			return
		}
		if err := r.h.Ack(e.From, e.Exchange); err != nil {
			r.out.emit(p2p.Error{Peer: e.From, Err: fmt.Errorf("ack %s: %w", e.Exchange, err)})
		}
	case *handler.Request:
		r.out.emit(e)
		if r.cfg.Handler.AutoReply == "echo" && !r.closing {
			r.autoReply(e)
		}
	case *handler.Reply:
		r.printReply(*e)
		if o, ok := r.replies.replied(e.Exchange); ok {
			r.printOutcome(o)
		}
	case *handler.Outcome:
		// The handler gives a request's Reply before its Outcome, but on
		// another channel: an outcome whose reply is still on its way is
		// printed after it, so that a script sees the reply first (or,
		// when Close dropped the reply, at shutdown with the one it
		// carries).
		if e.Role == handler.Dialer && e.Kind == handler.KindRequest && e.OK && !r.replies.ended(*e) {
			return
		}
		r.printOutcome(*e)
	case *handler.Error:
		err := e.Err
		if e.Repeats > 0 {
			err = fmt.Errorf("%w (and %d more errors about this peer, folded)", err, e.Repeats)
		}
		r.out.emit(p2p.Error{Peer: e.Peer, Err: err})
	case *handler.ConnectionLimit:
		r.out.emit(p2p.ConnectionLimit{Peer: e.Peer, IP: e.IP, Reason: e.Reason, Until: e.Until})
		if r.dht != nil && e.Peer != "" {
			r.dht.Evict(e.Peer)
		}
	case *handler.Dropped:
		// Printed from the node's own Dropped, which the observer passes
		// on with the message ID that the handler's leaves out.
	}
}

// printReply prints a reply to one of our requests, with the stdin id its
// tag carries.
func (r *runner) printReply(e handler.Reply) {
	id, _ := tagID(e.Tag)
	if err := r.out.print(replyEvent{Reply: e, ID: id}); err != nil {
		// Its outcome is then not acknowledged: both come again at the
		// next start.
		r.notPrinted(err)
		if r.unprintedReplies == nil {
			r.unprintedReplies = make(map[handler.ExchangeID]bool)
		}
		r.unprintedReplies[e.Exchange] = true
	}
	r.ops.ctl.replied(e)
}

// notPrinted logs, once, that stdout refuses events: what was not printed
// is not acknowledged, and the next run on the data directory delivers it
// again.
func (r *runner) notPrinted(err error) {
	if r.stdoutFailed || errors.Is(err, errSealed) {
		// Sealed: the stop was given up, and the log said so.
		return
	}
	r.stdoutFailed = true
	r.log.Warn("writing an event to stdout failed: events not printed are not marked handled, the next run on the data directory delivers them again",
		zap.Error(err))
}

// printOutcome prints how an exchange ended, and acknowledges our own
// exchange's outcome once printed: with a store, one killed in between is
// printed again at the next start, marked redelivered, rather than never.
func (r *runner) printOutcome(e handler.Outcome) {
	var (
		id      uint64
		failed  error
		printed = func(err error) {
			if err != nil && failed == nil {
				failed = err
			}
		}
	)
	if e.Role == handler.Dialer {
		id, _ = tagID(e.Tag)
		// Every message run sends comes from a stdin send, which gets a
		// status event as sends had before the handler, also when it
		// resumed after a restart.
		if e.Kind == handler.KindMessage {
			printed(r.out.print(sendStatus(e, id)))
		}
	}
	printed(r.out.print(exchangeEvent{Outcome: e, ID: id}))
	if r.unprintedReplies[e.Exchange] {
		delete(r.unprintedReplies, e.Exchange)
		printed(errors.New("its reply was not printed"))
	}
	r.ops.ctl.ended(e)
	if e.Role == handler.Dialer {
		if failed != nil {
			// Not acknowledged: the next start prints it again.
			r.notPrinted(failed)
			return
		}
		if err := r.h.AckOutcome(e.Exchange); err != nil {
			r.out.emit(p2p.Error{Peer: e.Peer, Err: fmt.Errorf("ack outcome %s: %w", e.Exchange, err)})
		}
	}
}

// stdinTag labels an exchange with the id of the stdin command that
// started it; tagID reads it back.
func stdinTag(id uint64) handler.CallOption {
	return handler.WithTag(strconv.FormatUint(id, 10))
}

// flushSeen prints the node events the observer queued.
func (r *runner) flushSeen() {
	evs, lost := r.seen.take()
	for _, ev := range evs {
		r.out.emit(ev)
	}
	if lost > 0 {
		r.out.emit(p2p.Error{Err: fmt.Errorf("%d connection events not printed: output too slow", lost)})
	}
}

// maxObserved bounds the node events waiting to be printed. They come one
// per connection opened or closed, so only a reader of stdout stalled for
// long reaches it.
const maxObserved = 1 << 16

// observed is the queue between the handler's Observe hook, which runs on
// the handler's loop and must never block, and the run loop, which prints.
type observed struct {
	mu   sync.Mutex
	q    []p2p.Event
	lost int
	wake chan struct{} // a token when q gains events
}

func newObserved() *observed { return &observed{wake: make(chan struct{}, 1)} }

// observe is the handler's Config.Observe: it keeps the node events the
// handler does not pass on (connections, refusals, Dropped with its
// message ID, relay reservations and hole punches).
func (o *observed) observe(ev p2p.Event) {
	switch ev.(type) {
	case p2p.Connected, p2p.Disconnected, p2p.Dropped, p2p.Refused, p2p.RelayReservations, p2p.HolePunch, p2p.HolePunchReady:
	default:
		return
	}
	o.mu.Lock()
	if len(o.q) < maxObserved {
		o.q = append(o.q, ev)
	} else {
		o.lost++
	}
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// take empties the queue.
func (o *observed) take() ([]p2p.Event, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	q, lost := o.q, o.lost
	o.q, o.lost = nil, 0
	return q, lost
}

// startDHT joins the DHT on the handler's node and makes it the handler's
// resolver, so that commands without an address find their peer.
func (r *runner) startDHT() error {
	dcfg, err := r.cfg.DHT.dhtConfig()
	if err != nil {
		return err
	}
	dcfg.Logger = r.log
	if r.mem != nil {
		// Records sealed to the members of the version in force.
		dcfg.Membership = r.mem.Current
	}
	if relayed := r.node.RelayAddrs(); len(relayed) > 0 {
		// A node behind NAT is found at its relays: its record says so.
		host := r.node.Host()
		dcfg.Addrs = func() []ma.Multiaddr { return ma.Unique(append(host.Addrs(), relayed...)) }
	}
	if r.dht, err = dht.New(r.node, dcfg); err != nil {
		return err
	}
	if err := r.h.SetResolver(r.dht); err != nil {
		_ = r.dht.Close()
		r.dht = nil
		return err
	}
	return nil
}

// publishTimeout bounds run's first publication of its DHT record.
const publishTimeout = 30 * time.Second

// watchDHT prints dht_ready once the routing table has a peer, then
// publishes the node's record and prints it. The DHT publishes by itself
// as well; publishing here is what gives the operator (and scripts) a line
// saying the node can now be found.
func (r *runner) watchDHT() {
	if r.dht == nil {
		return
	}
	d := r.dht
	r.bg.Go(func() {
		select {
		case <-d.Ready():
		case <-r.bgCtx.Done():
			return
		}
		r.out.emit(dhtReadyEvent{Peers: len(d.Peers())})
		ctx, cancel := context.WithTimeout(r.bgCtx, publishTimeout)
		defer cancel()
		rec, err := d.Publish(ctx)
		switch {
		case err == nil:
			r.out.emit(publishedEvent{Record: rec})
		case r.bgCtx.Err() == nil:
			r.out.emit(p2p.Error{Err: fmt.Errorf("dht: publish: %w", err)})
		}
	})
}

// stopDHT stops the watcher and the DHT (not the node).
func (r *runner) stopDHT() {
	r.bgCancel()
	r.bg.Wait()
	if r.dht != nil {
		if err := r.dht.Close(); err != nil {
			r.log.Warn("closing the dht", zap.Error(err))
		}
	}
}

// peerName is the allowlist's name of p, as the list stands now: a name
// changed by a reload shows from the next event on.
func (r *runner) peerName(p peer.ID) string {
	e, _ := r.list.Get(p)
	return e.Name
}
