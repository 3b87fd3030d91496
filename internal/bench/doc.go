// Package bench holds the project's performance workloads and the bare
// go-libp2p baselines they are judged against. Both `go test -bench` and
// `p2pnode bench` run them, so the numbers in a benchmark run and in the CLI
// come from one implementation.
//
// A workload returns how long n operations took; callers turn that into a
// rate and divide by the baseline measured in the same run.
package bench
