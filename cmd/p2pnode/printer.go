package main

import (
	"errors"
	"io"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// printer writes event lines. Events come from the run loop and from file
// watcher callbacks; the mutex makes each line one uninterrupted write.
type printer struct {
	mu     sync.Mutex
	w      io.Writer
	asJSON bool
	names  namer // the allowlist's names beside peer IDs; nil: none
	// sealed: the last line is out (sealLast); nothing more is written.
	sealed bool
}

// errSealed is print's error once the printer is sealed: the line was not
// written, so what depends on it (an ack) must not follow.
var errSealed = errors.New("stdout sealed: the node gave its stop up")

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
	if p.sealed {
		return errSealed
	}
	_, err := p.w.Write(line)
	return err
}

// sealLast writes the line of ev as the last one: nothing written after
// it, and nothing acknowledged for want of its line, so that the restart
// prints again what would have come after. A stop given up leaves its
// goroutine running until the process exits (awaitStop), and a script or
// supervisor takes the line that says so as the node's last word.
func (p *printer) sealLast(ev any) {
	line := renderNamed(ev, p.asJSON, p.names)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.sealed {
		_, _ = p.w.Write(line)
	}
	p.sealed = true
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
