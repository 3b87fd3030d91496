package main

// The stop of a node whose store failed for good. The store says so at
// once (Failed), but a commit stalled behind pebble's failed flush returns
// only once its disk has room again, and whatever waits for it waits as
// long: the run loop (a stdin request, an auto-reply, an Ack), the
// handler's Close (its last commit), the store's Close. The stop is then
// bounded: after failedStopTimeout the process exits 1 all the same,
// saying what it left unclosed, as a crash would have left it (what was
// acknowledged as written is on disk; the restart recovers it).

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// failedStopTimeout bounds the stop of a node whose store failed, from the
// failure to giving the stop up (runNode then closes the control socket
// and the metrics server, each bounded, and returns): the handler's
// CloseTimeout, which exchanges in flight get to end as in every stop, and
// as long again for the rest (closing the store). docs/operations.md says
// 10 seconds.
const failedStopTimeout = 2 * handler.DefaultCloseTimeout

// storeLife is what run watches of its store, and how it closes it:
// *store.Store, or a test's stand-in (runHooks.store).
type storeLife interface {
	// Err is nil while the store works, and wraps store.ErrFailed once it
	// failed for good.
	Err() error
	// Failed is closed when Err turns non-nil.
	Failed() <-chan struct{}
	// Close closes the store; after a failure it may wait without bound.
	Close() error
}

// runHooks let this package's tests stand between run and what they cannot
// make fail at will. The zero value changes nothing.
type runHooks struct {
	// store, if set, wraps the store run watches and closes (its Err,
	// Failed and Close); the handler and the control API use the store
	// itself.
	store func(*store.Store) storeLife
	// handlerStore, if set, wraps the store the handler writes to.
	handlerStore func(handler.Store) handler.Store
	// failedStop, if set, replaces failedStopTimeout.
	failedStop time.Duration
}

// Stop stages: how far the stop went, for the line that says what an
// overrun stop left unclosed.
const (
	stageRunning int32 = iota // the run loop, which may wait on a stalled commit
	stageHandler              // the handler closing
	stageStore                // the store closing
	stageDone                 // all closed
)

// serve runs the loop and then the orderly stop, the store's close
// included, and closes served: on its own goroutine, for runNode to bound
// a stop that waits on a failed store (awaitStop). stopWatch and stopOps
// stop the file watchers and the operator interfaces.
func (r *runner) serve(lines <-chan stdinLine, sigs <-chan os.Signal, stopWatch, stopOps func(), served chan<- struct{}) {
	defer close(served)
	r.loop(lines, sigs)
	r.stage.Store(stageHandler)
	// No new control calls from here, but the socket stays open while the
	// handler closes: a send waiting for its exchange hears how it ended,
	// since the exchange may still end within the handler's CloseTimeout.
	// Only what is still unfinished after that stays in the outbox.
	r.ops.stopping.Store(true)
	// From here a second SIGINT or SIGTERM kills the process at once, in
	// case stopping hangs; SIGHUP stays caught (and ignored) until exit.
	signal.Reset(syscall.SIGINT, syscall.SIGTERM)
	stopWatch()
	_ = r.shutdown()
	stopOps()
	r.stage.Store(stageStore)
	r.closeStore()
	r.stage.Store(stageDone)
}

// awaitStop waits for served, closed when serve is over, and returns the
// exit error of run: nil after a stop it was asked for; once the store
// failed, the store's error, after the stop ended or failedStopTimeout
// passed, whichever comes first. It prints the store's failure as an
// error event, whether the run loop noticed it or is stuck on a commit
// behind it; and on an overrun, what the stop left unclosed, as stdout's
// last line (printer.sealLast). abandoned reports an overrun: serve may
// still be running, and the caller must not close what it closes.
func (r *runner) awaitStop(served <-chan struct{}) (err error, abandoned bool) {
	var failed <-chan struct{} // nil: ephemeral, never ready
	if r.life != nil {
		failed = r.life.Failed()
	}
	select {
	case <-served:
		select {
		case <-failed:
			// Failed during the stop, or as the loop ended: say so.
			return r.storeFailed(time.Now().Add(lastLineWait)), false
		default:
			return nil, false
		}
	case <-failed:
	}
	// The stop is decided: from here a SIGINT or SIGTERM kills the process
	// at once, as serve lets it once the loop returns, which a loop stuck
	// on a stalled commit never does (its signals would wait unread for
	// the whole budget). Before the line below, which a supervisor may
	// take as its cue to signal.
	signal.Reset(syscall.SIGINT, syscall.SIGTERM)
	budget := failedStopTimeout
	if r.hooks.failedStop > 0 {
		budget = r.hooks.failedStop
	}
	// Counted from the failure: a stdout that takes no line (a pipe nobody
	// reads, the run loop's write blocked on it) holds the line below
	// until the budget is spent at most, not the stop.
	deadline := time.Now().Add(budget)
	t := time.NewTimer(budget)
	defer t.Stop()
	err = r.storeFailed(deadline)
	select {
	case <-served:
		return err, false
	case <-t.C:
	}
	var left string
	switch r.stage.Load() {
	case stageRunning, stageHandler:
		left = "the node (its exchanges in flight are in the store as far as they were written) and the store"
	case stageStore:
		left = "the store"
	default:
		// serve is ending as the timer fired: let it.
		<-served
		return err, false
	}
	over := fmt.Errorf("%w; the stop did not end within %s of the failure (a write waits for room on the store's disk): "+
		"exiting with %s not closed, as a crash would; the restart recovers what is on disk", err, budget, left)
	// The last line: serve goes on until the process exits (it may drain
	// the handler, print outcomes and replies), and none of that may
	// follow the line that says the node exits, nor be acknowledged on
	// the failed store: the restart prints it.
	r.log.Error("store failed: stop overran: exiting without closing", zap.Duration("after", budget),
		zap.String("not_closed", left))
	if err := r.out.sealLast(p2p.Error{Err: over}, time.Now().Add(lastLineWait)); errors.Is(err, errStalled) {
		// The process exits all the same; the log says what stdout
		// missed.
		r.log.Error("stdout did not take the stop's last line: exiting without it", zap.Duration("waited", lastLineWait))
	}
	return over, true
}

// lastLineWait is how long the stop after a store failure waits for
// stdout to take a line past its budget: the last line, or the failure's
// when the stop ended first. A stdout that takes lines takes one at once;
// one whose reader is stalled must not hold the exit.
const lastLineWait = time.Second

// storeFailed prints, once, that the store failed and the node stops for
// it, waiting for stdout until deadline at most, and returns the error run
// exits with.
func (r *runner) storeFailed(deadline time.Time) error {
	err := fmt.Errorf("%w; stopping: a restart opens it again and resumes what it holds", r.life.Err())
	if r.failReported.CompareAndSwap(false, true) {
		// Every later write would fail, the node would refuse all work
		// and answer busy, and look alive: it stops instead, exit status
		// 1, for its supervisor to start it again (which opens the store
		// again and resumes what is on disk). Logged first: stderr says
		// it even while stdout takes no line.
		r.log.Error("store failed: stopping", zap.Error(r.life.Err()))
		_ = r.out.printBy(p2p.Error{Err: err}, deadline)
	}
	return err
}
