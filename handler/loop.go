package handler

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// run is the handler's loop: it takes the node's deliveries when the node
// rings (take.go), reads the Priority channel, the Resolver's answers and
// the timers, and applies each to the state machine under mu. It never
// blocks on the application (whose channels are outboxes) nor for long on
// the node (whose Sender loop never blocks on us).
func (h *Handler) run() {
	defer h.teardown()
	sweep := max(h.cfg.DedupeTTL/4, time.Second)
	var sweeper func()
	sweeper = func() {
		now := time.Now()
		h.seen.sweep(now)
		h.done.sweep(now)
		if h.durable() {
			h.flushExpired()
		}
		h.timers.after(sweep, sweeper)
	}
	h.mu.Lock()
	h.timers.after(sweep, sweeper)
	// Not before: until now the handler was being built, or resumed from
	// its store, and nothing but the loop may apply what the node delivers.
	h.running = true
	h.mu.Unlock()

	in := inputs{prio: h.node.Priority()}
	recv := h.node.Deliveries()
	for {
		// A nil channel is never selected, and costs the select nothing:
		// the loop listens only for what can matter in its state, which
		// only the loop itself changes.
		h.mu.Lock()
		in.data, in.drained, in.wake = recv, nil, nil
		if h.paused {
			in.data, in.drained = nil, h.events.Drained()
		}
		if h.stopping {
			in.wake = h.wake
		}
		in.deadline = h.deadline
		h.mu.Unlock()
		if !h.step(&in) {
			return
		}
	}
}

// inputs are the channels the loop waits on, besides its commands, the
// timers, the Resolver's answers and the node's bell.
type inputs struct {
	data     <-chan p2p.Delivery // the node's Deliveries, read under mu; nil while paused
	prio     <-chan p2p.Event    // the node's Priority; nil once closed
	drained  <-chan struct{}     // while paused
	wake     <-chan struct{}     // while stopping
	deadline <-chan struct{}     // once shutting down
}

// step waits for one input and applies it, then the node's deliveries
// that wait. It reports false once the loop is to end.
func (h *Handler) step(in *inputs) bool {
	select {
	case c := <-h.cmds:
		h.mu.Lock()
		h.command(c)
	case <-h.bell:
		h.mu.Lock()
	case <-h.flushBell:
		h.flushLater()
	case ev, ok := <-in.prio:
		if !ok {
			in.prio = nil
			return true
		}
		h.observe(ev)
		if d, ok := ev.(p2p.Dropped); ok {
			h.prio.Push(&Dropped{Peer: d.Peer, Count: d.Count}, false)
		}
		return true
	case <-h.timers.C():
		h.mu.Lock()
		h.timers.expire()
	case r := <-h.resolved:
		h.mu.Lock()
		h.onResolved(r)
	case <-in.drained:
		h.mu.Lock()
		if h.paused && h.events.Queued() <= h.cfg.MaxBacklog/2 {
			h.paused = false
			in.data = h.node.Deliveries()
			h.log.Info("application caught up: taking data again")
		}
	case <-in.wake:
		h.mu.Lock()
	case <-h.dur.finished:
		h.mu.Lock()
		h.handOut()
	case <-h.dur.more:
		h.mu.Lock() // afterInput delivers them
	case <-in.deadline:
		h.mu.Lock()
		defer h.mu.Unlock()
		h.abort()
		h.exited = true
		return false
	}
	return h.drainData(in)
}

// maxDrain bounds the node events one wake of the loop (or one Take)
// applies, so that timers and commands are not kept waiting behind a busy
// node.
const maxDrain = 64

// drainData applies the node events waiting in its channel, until it is
// empty, maxDrain of them (the loop rings itself to come back for the
// rest), or the application falls behind (paused). Every input ends with
// it: a delivery rings the bell only once, and one the loop or a reader
// left behind must still be taken. The caller holds mu; drainData
// releases it.
func (h *Handler) drainData(in *inputs) bool {
	defer h.mu.Unlock()
	for taken := 0; ; taken++ {
		if h.afterInput() {
			h.exited = true
			return false
		}
		if h.paused || in.data == nil {
			return true
		}
		if taken == maxDrain {
			h.ring()
			return true
		}
		var ev p2p.Delivery
		select {
		case e, ok := <-in.data:
			if !ok {
				h.log.Warn("p2p node stopped: closing the handler")
				h.closing.Store(true)
				h.abort()
				h.exited = true
				return false
			}
			ev = e
		default:
			return true
		}
		if h.cfg.Observe != nil {
			// Outside mu: the hook may call the handler. No reader takes
			// deliveries meanwhile (taker.Take): with a hook, the loop
			// alone reads the channel, so the order holds.
			h.mu.Unlock()
			h.observeDelivery(ev)
			h.mu.Lock()
		}
		h.nodeEvent(ev)
	}
}

// afterInput releases the tests' state waits an input satisfied and reports
// whether the loop should end: stopping, with no exchange left. The caller
// holds mu.
func (h *Handler) afterInput() bool {
	if len(h.dur.overflow) > 0 {
		h.deliverOverflow()
	}
	if len(h.waits) > 0 {
		h.checkWaits()
	}
	return h.stopping && h.active == 0
}

// teardown stops everything the handler started, in dependency order.
func (h *Handler) teardown() {
	if h.stopWatchAL != nil {
		h.stopWatchAL()
	}
	h.timers.stop()
	h.cancel()
	// What the last API calls left buffered for the loop (endCall) goes
	// before the node drains its streams.
	h.mu.Lock()
	h.flushDeferred()
	h.mu.Unlock()
	h.closeErr = h.node.Close()
	// The node reports the refusals it was still counting as it closes
	// (p2p.Refused): shown to Observe, so that their counts add up to its
	// refusal metric. The rest of what is left no longer matters.
	for d := range h.node.Deliveries() {
		if r, ok := d.Event.(p2p.Refused); ok {
			h.observe(r)
		}
	}
	h.wg.Wait()
	if h.durable() {
		// The ends recorded just before the close still owe their
		// outcomes: the store has them, so the application gets them.
		h.mu.Lock()
		h.flushExpired()
		h.mu.Unlock()
		var b store.Batch
		_ = h.cfg.Store.Commit(&b) // returns once every earlier batch is through
		h.dur.finishing.Wait()     // and a full store's second batches
		h.mu.Lock()
		h.handOut()
		h.mu.Unlock()
	}
	// A request whose end waits for the store's answer about its reply
	// (Handler.recorded) may still owe its Outcome.
	h.pending.waitRecordings()
	h.events.Close()
	h.outcomes.Close()
	h.prio.Close()
	if h.durable() {
		h.keepUnread(h.outcomes.Left())
	}
	// The registry is free again for a handler made after this one (one
	// handler per registry), and no longer shows a closed handler.
	h.metrics.unregister()
	close(h.loopDone)
}

func (h *Handler) command(c any) {
	switch c := c.(type) {
	case resolverCmd:
		h.resolver = c.r
	case removedCmd:
		h.removed(c.peers)
	case shutdownCmd:
		h.shutdown(c.deadline)
	case stateWait:
		h.waits = append(h.waits, c)
	}
}

// shutdown stops new exchanges and fails the queued ones; the loop then ends
// when the active ones have, or at the deadline.
func (h *Handler) shutdown(deadline <-chan struct{}) {
	if h.stopping {
		return
	}
	h.stopping = true
	h.deadline = deadline
	for _, ps := range h.peers {
		for _, ex := range ps.queue.drain() {
			h.end(ex, ReasonClosed, ErrClosed)
		}
	}
}

// abort fails every exchange left with ReasonClosed.
func (h *Handler) abort() {
	h.stopping = true
	for _, ps := range h.peers {
		for _, ex := range ps.queue.drain() {
			h.end(ex, ReasonClosed, ErrClosed)
		}
		for _, ex := range ps.exchanges() {
			h.end(ex, ReasonClosed, ErrClosed)
		}
	}
}

// observe shows a node event to Config.Observe, if set.
func (h *Handler) observe(ev p2p.Event) {
	if h.cfg.Observe != nil {
		h.cfg.Observe(ev)
	}
}

// observeDelivery is observe for an event of the node's Deliveries, which
// it boxes only for an Observe hook.
func (h *Handler) observeDelivery(d p2p.Delivery) {
	if h.cfg.Observe != nil {
		h.cfg.Observe(d.AsEvent())
	}
}

func (h *Handler) nodeEvent(d p2p.Delivery) {
	switch d.Kind {
	case p2p.DeliveredData:
		h.onData(d.Data)
		return
	case p2p.DeliveredStatus:
		h.onStatus(d.Status)
		return
	}
	switch e := d.Event.(type) {
	case p2p.Connected:
		h.onConnected(e.Peer)
	case p2p.Disconnected:
		h.onDisconnected(e.Peer)
	case p2p.ConnectionLimit:
		h.prio.Push(&ConnectionLimit{Peer: e.Peer, IP: e.IP, Reason: e.Reason, Until: e.Until}, false)
		if ps := h.peers[e.Peer]; e.Peer != "" && ps != nil {
			h.cutOff(ps, fmt.Errorf("%w until %s (%s)", ErrRateLimited, e.Until.Format(time.RFC3339), e.Reason))
		}
	case p2p.Error:
		h.outcomes.Push(&Error{Peer: e.Peer, Err: e.Err}, false)
	}
}

// onData decodes an envelope and hands it to its exchange.
func (h *Handler) onData(d p2p.Data) {
	if d.Channel != h.cfg.Channel {
		// Permitted by the routing table, but the handler owns its node
		// and takes one channel: nothing will ever read this. It costs
		// the peer an unauthorized token, as data the routing table
		// refuses does, and its Errors fold into one while queued
		// (mergeErrors): a peer sending it as fast as it is acked would
		// otherwise push an Error each time, crowding the alerts about
		// other peers out of Outcomes past its limit.
		h.node.Charge(d.From, ratelimit.Unauthorized)
		h.outcomes.Push(&Error{Peer: d.From, Err: fmt.Errorf("%w: data on channel %d, the handler's is %d", ErrUnexpectedMessage, d.Channel, h.cfg.Channel)}, false)
		return
	}
	// accept has refused (MALFORMED) every payload on our channel that is
	// not a valid envelope before the node acked it, so these checks only
	// guard against a node that delivered one anyway.
	env, err := decodeEnvelope(d.Bytes)
	if err != nil {
		h.unexpected(d.From, fmt.Errorf("%w: malformed envelope: %w", ErrUnexpectedMessage, err))
		return
	}
	id := ExchangeID(env.exchange)
	if id == 0 {
		h.unexpected(d.From, fmt.Errorf("%w: envelope without an exchange ID", ErrUnexpectedMessage))
		return
	}
	switch env.kind {
	case pb.Kind_KIND_REQUEST:
		h.onRequest(d.From, id, env.payload, d.Origin)
	case pb.Kind_KIND_REPLY:
		h.onReply(d.From, id, env.payload)
	case pb.Kind_KIND_MESSAGE:
		h.onMessage(d.From, id, env.payload)
	default:
		h.unexpected(d.From, fmt.Errorf("%w: envelope of kind %v", ErrUnexpectedMessage, env.kind))
	}
}

// deliver hands received data to the application. Past MaxBacklog the loop
// stops reading the node: backpressure belongs where the sender can see it,
// and the node answers "busy" once its own buffer fills.
func (h *Handler) deliver(ev Event) {
	if n := h.events.Push(ev, true); n >= h.cfg.MaxBacklog && !h.paused {
		h.paused = true
		h.log.Warn("application behind: no more data taken from the node until it catches up", zap.Int("backlog", n))
	}
}

// send hands a command to the node. The node's loop never blocks on us, so
// this waits at most for it to take the previous commands.
func (h *Handler) send(c p2p.Command) error {
	return h.node.Send(context.Background(), c)
}

// stateWait asks the loop to close done once exchange id is in state, or,
// with paused, once the loop stops taking data for an application that
// fell behind (for tests, which must reach a state before injecting a
// fault).
type stateWait struct {
	id     ExchangeID
	state  State
	paused bool
	done   chan struct{}
}

// checkWaits releases the stateWaits whose exchange reached its state.
func (h *Handler) checkWaits() {
	kept := h.waits[:0]
	for _, w := range h.waits {
		if (w.paused && h.paused) || (!w.paused && h.stateOf(w.id) == w.state) {
			close(w.done)
		} else {
			kept = append(kept, w)
		}
	}
	h.waits = kept
}

func (h *Handler) stateOf(id ExchangeID) State {
	for _, ps := range h.peers {
		if ex := ps.outbound[id]; ex != nil {
			return ex.state
		}
		if ex := ps.inbound[id]; ex != nil {
			return ex.state
		}
	}
	return ""
}
