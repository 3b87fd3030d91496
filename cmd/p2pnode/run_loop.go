package main

// The running node's main loop: events printed, stdin commands and signals
// carried out, and the orderly shutdown.

import (
	"fmt"
	"os"
	"syscall"

	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// loop prints the handler's and the node's events and carries out stdin
// commands and signals until it is time to stop.
func (r *runner) loop(lines <-chan stdinLine, sigs <-chan os.Signal) {
	events, outcomes, prio := r.h.Events(), r.h.Outcomes(), r.h.Priority()
	var storeFailed <-chan struct{} // nil: ephemeral, never ready
	if r.life != nil {
		storeFailed = r.life.Failed()
	}
	defer r.stopWaitingReplies()
	for {
		// Node events first: the handler observed them before it produced
		// whatever is waiting on its own channels (a connection before
		// its first message).
		r.flushSeen()
		// Priority alerts go first when both are ready: that is the point
		// of the separate channel.
		select {
		case ev, ok := <-prio:
			if ok {
				r.handlerEvent(ev)
				continue
			}
			prio = nil
		default:
		}
		select {
		case <-r.seen.wake:
		case ev, ok := <-prio:
			if !ok {
				prio = nil
				continue
			}
			r.handlerEvent(ev)
		case ev, ok := <-events:
			if !ok {
				r.log.Warn("node stopped")
				return
			}
			r.handlerEvent(ev)
		case ev, ok := <-outcomes:
			if !ok {
				r.log.Warn("node stopped")
				return
			}
			r.handlerEvent(ev)
		case l, ok := <-lines:
			if !ok {
				r.log.Info("stdin closed: stopping")
				return
			}
			if !r.handleLine(l) {
				return
			}
		case s := <-sigs:
			if s == syscall.SIGHUP {
				r.reload()
				continue
			}
			r.log.Info("signal: stopping", zap.Stringer("signal", s))
			return
		case <-r.waiting.due():
			r.retryReplies()
		case <-storeFailed:
			// Every later write would fail: the node stops, and
			// awaitStop says why (also when the loop is stuck on a
			// commit behind the failure, and never gets here).
			return
		}
	}
}

// handleLine carries out one stdin line and reports whether to go on.
func (r *runner) handleLine(l stdinLine) bool {
	switch {
	case l.err == errLineTooLong:
		r.parser.line++
		r.out.emit(p2p.Error{Err: fmt.Errorf("stdin line %d: longer than %d bytes: skipped",
			r.parser.line, maxStdinLine(r.node.Config().MaxMessageSize))})
		return true
	case l.err != nil:
		// The reader stops after this; the closed channel ends the loop.
		r.out.emit(p2p.Error{Err: fmt.Errorf("stdin: %w", l.err)})
		return true
	}
	cmd, err := r.parser.parse(l.text)
	if err != nil {
		if id := lineID(l.text); id != 0 {
			r.out.emit(badLineEvent{ID: id, Err: err})
		} else {
			r.out.emit(p2p.Error{Err: err})
		}
		return true
	}
	if cmd == nil {
		return true
	}
	r.log.Debug("command", zap.String("type", fmt.Sprintf("%T", cmd)))
	return r.command(cmd)
}

// shutdown stops the DHT, then closes the handler and prints the events it
// still had. Ephemeral, the handler gives exchanges in flight its
// CloseTimeout, then fails them: every message still waiting for its ack
// gets its status. With a store, the exchanges this node started and that
// are still running are left in it, without an outcome: the next run on
// the data directory resumes them. The store itself is closed after
// shutdown (runNode's deferred closeStore).
func (r *runner) shutdown() error {
	r.closing = true
	r.stopMembership()
	r.stopDHT()
	done := make(chan error, 1)
	go func() { done <- r.h.Close() }()
	// Read while Close runs: what does not fit in the channels when the
	// handler closes them would be lost.
	events, outcomes, prio := r.h.Events(), r.h.Outcomes(), r.h.Priority()
	for events != nil || outcomes != nil || prio != nil {
		r.flushSeen()
		select {
		case <-r.seen.wake:
		case ev, ok := <-prio:
			if !ok {
				prio = nil
				continue
			}
			r.handlerEvent(ev)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			r.handlerEvent(ev)
		case ev, ok := <-outcomes:
			if !ok {
				outcomes = nil
				continue
			}
			r.handlerEvent(ev)
		}
	}
	err := <-done
	// An OK outcome whose reply Close dropped (it did not fit in Events)
	// waits for it still: it carries the reply, printed from there.
	for _, o := range r.replies.unpaired() {
		if o.Reply != nil {
			r.printReply(*o.Reply)
		}
		r.printOutcome(o)
	}
	r.flushSeen()
	if err != nil {
		// Everything is stopped by now; a host that did not close cleanly
		// is worth a log line, not a failed exit.
		r.log.Warn("closing the node", zap.Error(err))
	}
	return nil
}
