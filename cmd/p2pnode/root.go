package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// stdio is where one invocation reads and writes. main passes the process's
// own; tests pass buffers.
type stdio struct {
	in  io.Reader
	out io.Writer
	err io.Writer
}

// app is the state shared by the commands of one invocation: its streams
// and the global flags. There is no package-level state, so tests can run
// invocations side by side.
type app struct {
	stdio
	log   logConfig // --log-level, --log-format
	hooks runHooks  // zero but in tests (run_stop.go)
}

// execute runs one invocation of p2pnode with args (without the program
// name) and returns the process exit status. Errors are printed here, once,
// as "p2pnode: <message>": cobra is told to print neither errors nor usage,
// because a usage dump buries the one line that says what is wrong.
func execute(args []string, s stdio) int {
	return executeApp(&app{stdio: s}, args)
}

// executeApp is execute with a's streams and hooks.
func executeApp(a *app, args []string) int {
	s := a.stdio
	root := newRootCmd(a)
	root.SetArgs(args)
	err := root.Execute()
	if err != nil {
		fmt.Fprintf(s.err, "p2pnode: %s\n", oneLine(err.Error()))
	}
	return exitCode(err)
}

// newRootCmd builds the command tree.
func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "p2pnode",
		Short: "Run and manage a BitVMX p2p node",
		Long: `p2pnode runs one BitVMX p2p node (authenticated, encrypted, allowlisted and
rate limited, exchanging requests and replies through the Multi-Exchange
Handler), shows a running node's status and peers and sends requests through
it (over its control socket), finds peers in the DHT, manages its identity
key and allowlist, lists and edits what a node kept in its data directory
(outbox, dead letters), prints an example configuration, demonstrates and
benchmarks the library.

Results are readable text by default and JSON with --json. A failure prints
one line, "p2pnode: <message>", on stderr and exits with status 1 (2 for a
usage mistake: an unknown flag or command, a missing argument, an invalid
value of a flag or configuration key, a flag that takes one value given
twice).`,
		Example: `  p2pnode demo
  p2pnode keygen --out node.key
  p2pnode allowlist add allowlist.yaml --id 16Uiu2HAm... --name operator-2
  p2pnode run --key node.key --listen /ip4/0.0.0.0/tcp/4001 --allowlist allowlist.yaml
  p2pnode status
  p2pnode send --addr /ip4/10.0.0.2/tcp/4001/p2p/16Uiu2HAm... "hello"
  p2pnode deadletters list --key node.key
  p2pnode bench`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version prints what "p2pnode version" prints.
		Version: buildVersion().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetIn(a.in)
	root.SetOut(a.out)
	root.SetErr(a.err)
	root.CompletionOptions.HiddenDefaultCmd = true
	// Inherited by every subcommand: a bad flag is a usage error (exit 2),
	// reported in one line.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	bindLogFlags(root.PersistentFlags(), &a.log)
	root.AddCommand(commands(a)...)
	refuseRepeatedFlags(root)
	return root
}

// commands lists the subcommands. Each lives in its own file with a
// constructor taking the app; a new subcommand is a new file and one line
// here.
func commands(a *app) []*cobra.Command {
	return []*cobra.Command{
		newKeygenCmd(a),
		newIDCmd(a),
		newRunCmd(a),
		newSendCmd(a),
		newStatusCmd(a),
		newPeersCmd(a),
		newCheckCmd(a),
		newFindCmd(a),
		newDemoCmd(a),
		newBenchCmd(a),
		newAllowlistCmd(a),
		newMembershipCmd(a),
		newConfigCmd(a),
		newOutboxCmd(a),
		newDeadLettersCmd(a),
		newVersionCmd(a),
	}
}

// asGroup makes cmd a command that only holds subcommands. Run without one
// it prints its help; run with an unknown one it fails with a usage error
// (cobra itself would print the help and exit 0 for a nested command).
func asGroup(cmd *cobra.Command) {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
}
