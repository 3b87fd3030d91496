package main

import (
	"io"
	"io/fs"
	"os"

	"golang.org/x/term"
)

// stdinMode says what run does with its stdin.
type stdinMode int

const (
	// stdinReadCommands: stdin is a command stream; its end stops the node.
	stdinReadCommands stdinMode = iota
	// stdinNoCommands: nothing will ever come on stdin (a service's /dev/null, a
	// closed descriptor): the node runs until SIGINT or SIGTERM.
	stdinNoCommands
)

// String names the mode as the "node started" log line shows it.
func (m stdinMode) String() string {
	if m == stdinNoCommands {
		return "none"
	}
	return "commands"
}

// detectStdinMode decides whether in carries commands. A pipe, a FIFO, a
// socket (Node.js and some supervisors hand children socket pairs), a
// terminal or a regular file (p2pnode run < commands.jsonl) is a command
// stream, read as before. Anything else is not: /dev/null, as systemd,
// docker without -i and nohup give a service, is a character device that is
// not a terminal, and reading it would end the node at once with status 0,
// which a service manager does not restart. A descriptor that cannot even
// be examined (closed) is no stream either. A reader that is not a file
// (tests) is a command stream.
func detectStdinMode(in io.Reader) stdinMode {
	f, ok := in.(*os.File)
	if !ok {
		return stdinReadCommands
	}
	st, err := f.Stat()
	if err != nil {
		return stdinNoCommands
	}
	m := st.Mode()
	switch {
	case m&(fs.ModeNamedPipe|fs.ModeSocket) != 0, m.IsRegular():
		return stdinReadCommands
	case m&fs.ModeCharDevice != 0 && term.IsTerminal(int(f.Fd())):
		return stdinReadCommands
	}
	return stdinNoCommands
}

// stdinMode is what this run does with in: --no-stdin says none, otherwise
// detectStdinMode decides. A node without commands says so at info level,
// since it will then run until a signal.
func (r *runner) stdinMode(in io.Reader) stdinMode {
	if r.cfg.NoStdin {
		return stdinNoCommands
	}
	m := detectStdinMode(in)
	if m == stdinNoCommands {
		r.log.Info("stdin is not a pipe, socket, terminal or file: no commands; running until SIGINT or SIGTERM")
	}
	return m
}
