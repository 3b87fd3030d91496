package main

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// printer writes event lines. Events come from the run loop and from file
// watcher callbacks; the mutex makes each line one uninterrupted write.
type printer struct {
	mu     sync.Mutex
	w      io.Writer
	asJSON bool
	names  namer // the allowlist's names beside peer IDs; nil: none
	// sealed: the last line is written or on its way (sealLast); no other
	// line is written after it. Set before its write takes mu, so that a
	// line waiting for mu behind a stalled write is not written after it
	// either.
	sealed atomic.Bool
}

// errSealed is print's error once the printer is sealed: the line was not
// written, so what depends on it (an ack) must not follow.
var errSealed = errors.New("stdout sealed: the node gave its stop up")

// errStalled is printBy's and sealLast's error when stdout did not take
// the line by the deadline.
var errStalled = errors.New("stdout did not take the line in time: its reader is stalled")

// emit writes the line of ev. A failed write (stdout closed, a full disk)
// cannot be reported anywhere useful; the node keeps running. Where a
// line not written must change what follows, print says so.
func (p *printer) emit(ev any) { _ = p.print(ev) }

// print writes the line of ev and returns the write's error: an event not
// written was not delivered, and what depends on its delivery (marking a
// message handled, acknowledging an outcome) must not follow.
func (p *printer) print(ev any) error {
	line := renderNamed(ev, p.asJSON, p.names)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sealed.Load() {
		return errSealed
	}
	_, err := p.w.Write(line)
	return err
}

// printBy is print, waiting for stdout until deadline at most (see
// within). The stop after a store failure prints with it: a stdout nobody
// reads must not hold that stop past its bound.
func (p *printer) printBy(ev any, deadline time.Time) error {
	return within(deadline, func() error { return p.print(ev) })
}

// sealLast writes the line of ev as the last one: nothing written after
// it, and nothing acknowledged for want of its line, so that the restart
// prints again what would have come after. A stop given up leaves its
// goroutine running until the process exits (awaitStop), and a script or
// supervisor takes the line that says so as the node's last word. It
// waits for stdout until deadline at most (see within); the printer is
// sealed all the same.
func (p *printer) sealLast(ev any, deadline time.Time) error {
	if !p.sealed.CompareAndSwap(false, true) {
		return errSealed
	}
	line := renderNamed(ev, p.asJSON, p.names)
	return within(deadline, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		_, err := p.w.Write(line)
		return err
	})
}

// within runs write on a goroutine of its own and waits for it until
// deadline: a write to a stdout nobody reads (a full pipe) blocks without
// bound, and so does every line waiting for the mutex behind it. The
// goroutine ends with its write; one that stdout never takes is left to
// the process's exit, which follows: only the stop after a store failure
// writes this way, and it exits once it has given its last line up.
func within(deadline time.Time, write func() error) error {
	done := make(chan error, 1)
	go func() { done <- write() }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		select {
		case err := <-done: // as the deadline came
			return err
		default:
			return errStalled
		}
	}
}

// namer gives the allowlist's name of a peer ("" when it has none, or is
// not listed). The nil namer names nobody.
type namer func(peer.ID) string

// of is the name of p, "" without one.
func (n namer) of(p peer.ID) string {
	if n == nil || p == "" {
		return ""
	}
	return n(p)
}

// text is p as a line of text shows it: its ID, then its name in
// parentheses when it has one.
func (n namer) text(p peer.ID) string {
	if name := n.of(p); name != "" {
		return p.String() + " (" + name + ")"
	}
	return p.String()
}
