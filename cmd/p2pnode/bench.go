package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/bitvmx/go-bitvmx-p2p/internal/bench"
)

const benchLong = `bench measures the performance targets on this machine, each workload
against a bare go-libp2p baseline (plain hosts with the same transport,
Noise and yamux, and nothing of ours on top) run in the same process,
alternating chunks of ours and of the baseline so that load changing during
the run weighs on both alike. It prints each workload's rate, the
baseline's, and their ratio: the number to compare across machines.

  acked send, 1 in flight        acked 256 B messages one at a time, over a
                                 warm connection; baseline: echo round trips
                                 on one stream. Target: 0.9
  acked send, 64 in flight       the same with 64 awaiting their ack. Target: 2
  exchange, kept connection      request and reply through the exchange
                                 handler over a connection both keep;
                                 baseline: one echo round trip. Target: 0.75
                                 (0.65 on a loaded machine)
                                 (an exchange is two acked messages; lazy
                                 acks ride with the reply and the next
                                 request, so on the wire it is one round
                                 trip, and the rest is goroutine handoffs)
  exchange, dial + disconnect    each exchange dials and closes its own
                                 connection (the handler's default);
                                 baseline: connect, echo, close. Target: 0.9

Each workload runs for --duration (or --count operations). A progress line
goes to stderr; stdout carries only the results. "p2pnode bench dht" (or
--dht) runs the DHT workload instead.

The efficiency workloads run on their own, or after the four above with
--all:

  bench scaling   CPU per exchange with 1, 8 and 32 peers (--peers) against
                  bare echo round trips. Target: <= 1.5x at 32 peers
  bench memory    memory per idle connection that carried one message
                  (--conns, default 64; --rounds). Target: <= 1.0x bare
  bench grpc      exchanges against unary gRPC calls over mutual TLS 1.3.
                  Targets: 1.66 on a kept connection, 1.0 with a new
                  connection per call

"p2pnode bench scaling --help" and the others say how each is measured;
docs/performance.md how to re-measure every target.`

// benchOptions are bench's flags.
type benchOptions struct {
	duration time.Duration
	count    int
	payload  int
	asJSON   bool
	dht      bool
	dhtOpts  dhtBenchOptions
	all      bool  // the default workloads, then scaling, grpc and memory
	peers    []int // bench scaling's peer counts
	conns    int   // bench memory's idle connections
	rounds   int   // bench memory's rounds
}

// newBenchCmd builds "bench" and "bench dht".
func newBenchCmd(a *app) *cobra.Command {
	o := benchOptions{duration: 2 * time.Second, payload: 256, peers: []int{1, 8, 32}, conns: 64, rounds: 3,
		dhtOpts: dhtBenchOptions{nodes: 100, lookups: 100, timeout: 5 * time.Minute}}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and latency against a bare go-libp2p baseline",
		Long:  benchLong,
		Example: `  p2pnode bench
  p2pnode bench --duration 10s --json
  p2pnode bench --count 500
  p2pnode bench --all --json
  p2pnode bench scaling --peers 1,8,32
  p2pnode bench memory --conns 64
  p2pnode bench grpc
  p2pnode bench dht --nodes 100 --lookups 200`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			switch {
			case o.dht && o.all:
				return usageErrorf("--dht and --all are separate runs: give one")
			case o.dht:
				return runDHTBench(a, o)
			case o.all:
				return runWorkloads(a, o, workloadsDefault|workloadsScaling|workloadsGRPC|workloadsMemory)
			}
			return runBench(a, o)
		},
	}
	fs := cmd.PersistentFlags()
	fs.DurationVar(&o.duration, "duration", o.duration, "how long each workload runs")
	fs.IntVar(&o.count, "count", 0, "run each workload for this many operations instead of --duration (DHT: lookups)")
	fs.BoolVar(&o.asJSON, "json", false, "print the results as one JSON object")
	cmd.Flags().IntVar(&o.payload, "payload", o.payload, "message size in `BYTES`")
	cmd.Flags().BoolVar(&o.dht, "dht", false, `run the DHT workload (same as "p2pnode bench dht")`)
	bindDHTBenchFlags(cmd.Flags(), &o.dhtOpts)
	cmd.Flags().BoolVar(&o.all, "all", false, "run the four workloads above, then scaling, grpc and memory (not dht)")
	bindEfficiencyFlags(cmd.Flags(), &o)

	sub := &cobra.Command{
		Use:   "dht",
		Short: "Measure DHT lookups in a network of nodes on loopback",
		Long:  dhtBenchLong,
		Example: `  p2pnode bench dht
  p2pnode bench dht --nodes 50 --lookups 500 --json`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return runDHTBench(a, o)
		},
	}
	bindDHTBenchFlags(sub.Flags(), &o.dhtOpts)
	cmd.AddCommand(sub)
	cmd.AddCommand(newEfficiencyCmds(a, &o)...)
	return cmd
}

func (o *benchOptions) validate() error {
	switch {
	case o.duration <= 0:
		return usageErrorf("--duration must be positive (got %s)", o.duration)
	case o.count < 0:
		return usageErrorf("--count must not be negative (got %d)", o.count)
	case o.payload < 1 || o.payload > maxBenchPayload:
		return usageErrorf("--payload must be between 1 and %d bytes (got %d)", maxBenchPayload, o.payload)
	}
	if err := o.validateEfficiency(); err != nil {
		return err
	}
	return o.dhtOpts.validate()
}

// maxBenchPayload is the largest --payload every workload can carry: the
// nodes' message limit (1 MiB, p2p's default) less room for the exchange
// handler's envelope around the payload (15 bytes at this size).
const maxBenchPayload = 1<<20 - 64

// benchCase is one workload of the table.
type benchCase struct {
	name, title, baseline, unit string
	target                      float64 // the ratio the performance target asks for; 0: none
	chunk                       int     // operations per alternation with the baseline
	setup                       func(ctx context.Context, size int) (*bench.Workload, error)
}

func benchCases() []benchCase {
	return []benchCase{
		// The chunks of the sends are p2p/bench_test.go's, so that both
		// report the same ratio.
		{"send_acked_1", "acked send, 1 in flight", "echo round trip, one stream", "msg/s", 0.9, 1000,
			func(ctx context.Context, size int) (*bench.Workload, error) { return sendAcked(ctx, 1, size) }},
		{"send_acked_64", "acked send, 64 in flight", "echo round trip, one stream", "msg/s", 2, 1000,
			func(ctx context.Context, size int) (*bench.Workload, error) { return sendAcked(ctx, 64, size) }},
		{"exchange_kept_conn", "exchange, kept connection", "echo round trip, one stream", "exchanges/s", 0.75, 200,
			bench.ExchangeKeptConn},
		{"exchange_dial_disconnect", "exchange, dial + disconnect", "connect, echo, close", "exchanges/s", 0.9, 10,
			bench.ExchangeDialDisconnect},
	}
}

// sendAcked is the p2p layer's acked-message workload (the one
// p2p/bench_test.go runs) as a Workload.
func sendAcked(ctx context.Context, inflight, size int) (*bench.Workload, error) {
	bare, err := bench.NewBarePair()
	if err != nil {
		return nil, err
	}
	echo, err := bare.Stream(ctx)
	if err != nil {
		bare.Close()
		return nil, err
	}
	pair, err := bench.NewNodePair(nil)
	if err != nil {
		bare.Close()
		return nil, err
	}
	return &bench.Workload{
		Ours: func(k int) (time.Duration, error) {
			res, err := pair.SendAcked(ctx, k, inflight, size)
			return res.Elapsed, err
		},
		Base:  func(k int) (time.Duration, error) { return echo.RoundTrips(k, size) },
		Close: func() { pair.Close(); bare.Close() },
	}, nil
}

// benchResult is one row of the results.
type benchResult struct {
	Name     string  `json:"name"`
	Title    string  `json:"title"`
	Baseline string  `json:"baseline"`
	Unit     string  `json:"unit"`
	Ops      int     `json:"ops"`
	Rate     float64 `json:"rate"`
	BareRate float64 `json:"bare_rate"`
	Ratio    float64 `json:"ratio"`
	// CPU time per operation (process user + system, both ends), ours and
	// the baseline's, and ours / the baseline's: it moves less than the
	// rates when other jobs share the cores. Absent where the system does
	// not report it.
	CPUMicros     float64 `json:"cpu_us_per_op,omitempty"`
	BareCPUMicros float64 `json:"bare_cpu_us_per_op,omitempty"`
	CPURatio      float64 `json:"cpu_ratio,omitempty"`
	Target        float64 `json:"target,omitempty"`
	Met           *bool   `json:"met,omitempty"`
}

// runBench runs bench's own four workloads.
func runBench(a *app, o benchOptions) error {
	return runWorkloads(a, o, workloadsDefault)
}

// runCases measures every case against its baseline, one after the other;
// name heads the progress line.
func runCases(ctx context.Context, name string, cases []benchCase, o benchOptions, prog *progress) ([]benchResult, error) {
	var results []benchResult
	for i, c := range cases {
		step := fmt.Sprintf("%s %d/%d: %s", name, i+1, len(cases), c.title)
		prog.set(step, "setting up")
		w, err := c.setup(ctx, o.payload)
		if err != nil {
			return nil, fmt.Errorf("bench %s: %w", c.title, err)
		}
		var oursCPU, baseCPU cpuTally
		timed := &bench.Workload{Ours: oursCPU.wrap(w.Ours), Base: baseCPU.wrap(w.Base)}
		n, ours, base, err := measure(timed, c.chunk, o.count, o.duration, func(n int) {
			prog.set(step, fmt.Sprintf("%d operations", n))
		})
		w.Close()
		if err != nil {
			return nil, fmt.Errorf("bench %s: %w", c.title, err)
		}
		r := benchResult{Name: c.name, Title: c.title, Baseline: c.baseline, Unit: c.unit, Ops: n,
			Rate: bench.Rate(n, ours), BareRate: bench.Rate(n, base), Target: c.target}
		r.Ratio = base.Seconds() / ours.Seconds()
		if oursCPU.ok && baseCPU.ok && baseCPU.total > 0 {
			r.CPUMicros, r.BareCPUMicros = micros(oursCPU.total)/float64(n), micros(baseCPU.total)/float64(n)
			r.CPURatio = r.CPUMicros / r.BareCPUMicros
		}
		if c.target > 0 {
			met := r.Ratio >= c.target
			r.Met = &met
		}
		results = append(results, r)
	}
	return results, nil
}

// measure runs w in alternating chunks until count operations (count > 0)
// or duration have passed, and returns the operations and the total time
// of ours and of the baseline.
func measure(w *bench.Workload, chunk, count int, duration time.Duration, progress func(int)) (n int, ours, base time.Duration, err error) {
	start := time.Now()
	for {
		k := chunk
		if count > 0 {
			k = min(chunk, count-n)
		}
		o, b, err := bench.Interleave(k, k, w.Ours, w.Base)
		if err != nil {
			return n, ours, base, err
		}
		n, ours, base = n+k, ours+o, base+b
		progress(n)
		if (count > 0 && n >= count) || (count == 0 && time.Since(start) >= duration) {
			return n, ours, base, nil
		}
	}
}

// cpuTally sums the process CPU time that a workload's calls use. ok
// stays false where the system does not report CPU time.
type cpuTally struct {
	total time.Duration
	ok    bool
}

// wrap returns run, timed as before, adding the CPU time of each call to
// the tally.
func (t *cpuTally) wrap(run func(k int) (time.Duration, error)) func(k int) (time.Duration, error) {
	t.ok = true
	return func(k int) (time.Duration, error) {
		before, err := bench.ProcessCPU()
		if err != nil {
			t.ok = false
			return run(k)
		}
		d, err := run(k)
		if after, cerr := bench.ProcessCPU(); cerr == nil {
			t.total += after - before
		} else {
			t.ok = false
		}
		return d, err
	}
}
