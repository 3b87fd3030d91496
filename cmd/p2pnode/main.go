// Command p2pnode runs one BitVMX p2p node, manages its identity key and
// allowlist, and prints an example configuration.
//
// Every command prints results for people by default and as JSON with
// --json. A failure is one line on stderr, "p2pnode: <message>", and a
// non-zero exit status: 1 for an error, 2 for a usage mistake (a flag,
// argument or configuration value that is not valid). Run
// "p2pnode help" for the commands and "p2pnode <command> --help" for the
// flags of each, with examples.
package main

import "os"

func main() {
	os.Exit(execute(os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr}))
}
