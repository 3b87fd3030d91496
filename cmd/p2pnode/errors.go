package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Exit statuses. Scripts and service managers branch on them, so they are
// part of the CLI contract.
const (
	exitOK    = 0
	exitError = 1 // the command failed: a file missing or not parsing, a key refused, a port in use, a peer...
	exitUsage = 2 // the invocation is wrong: unknown flag or command, missing argument, an invalid value of a flag or --config key
)

// usageError marks a mistake in the command line, as opposed to a failure
// while carrying out a well-formed command. It only changes the exit status:
// either way the user sees one line, never a usage dump.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usageErrorf builds a usageError from a format, like fmt.Errorf.
func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitCode maps the error a command returned to the process exit status.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	if _, ok := errors.AsType[usageError](err); ok {
		return exitUsage
	}
	// cobra reports an unknown subcommand with a plain error; it is a
	// command line mistake all the same.
	if strings.HasPrefix(err.Error(), "unknown command ") {
		return exitUsage
	}
	return exitError
}

// oneLine folds a message onto one line. Some errors (cobra's suggestions,
// YAML type errors, libp2p's lists of failed listeners) span several lines,
// and the contract is one line per error on stderr.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	// cobra: `unknown command "kegen" for "p2pnode"\n\nDid you mean this?\n\tkeygen\n`
	if head, sugg, ok := strings.Cut(s, "\n\nDid you mean this?\n"); ok {
		return head + "; did you mean " + strings.Join(strings.Fields(sugg), " or ") + "?"
	}
	var parts []string
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, " ")
}

// checkArgs wraps a cobra argument validator so that its complaints count
// as usage errors.
func checkArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
