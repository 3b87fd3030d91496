// Package bench holds the project's performance workloads and the bare
// go-libp2p baselines they are judged against. Both `go test -bench` and
// `p2pnode bench` run them, so the numbers in a benchmark run and in the CLI
// come from one implementation.
//
// A workload returns how long n operations took (for ExchangeScaling, the
// process CPU time they used: CPUCost); callers turn that into a rate or a
// cost per operation and divide by the baseline measured in the same run.
// IdleConnMemory measures memory per idle connection instead, and the gRPC
// workloads use grpc-go over mutual TLS as the baseline.
package bench
