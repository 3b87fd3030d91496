package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// progress is the one line on stderr that says what bench is doing. On a
// terminal it is rewritten in place; elsewhere (a log file, a pipe) each
// step is a line of its own and the counts are left out, so as not to
// flood it.
type progress struct {
	w        io.Writer
	terminal bool
	last     string // the step printed last
	width    int
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

// set shows what step is doing now (detail: a count, a stage).
func (p *progress) set(step, detail string) {
	s := step + ": " + detail
	if p.terminal {
		pad := max(p.width-len(s), 0)
		fmt.Fprintf(p.w, "\r%s%s", s, strings.Repeat(" ", pad))
		p.width = len(s)
		return
	}
	if step != p.last {
		fmt.Fprintln(p.w, s)
		p.last = step
	}
}

// done ends the progress line.
func (p *progress) done() {
	if p.terminal && p.width > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.width))
		p.width = 0
	}
}
