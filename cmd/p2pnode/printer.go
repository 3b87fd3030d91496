package main

import (
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
}

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
	_, err := p.w.Write(line)
	return err
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
