package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
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
                                 on one stream. Target: 0.8
  acked send, 64 in flight       the same with 64 awaiting their ack. Target: 2
  exchange, kept connection      request and reply through the exchange
                                 handler over a connection both keep;
                                 baseline: one echo round trip. Target: 0.5
                                 (an exchange is two acked messages; lazy
                                 acks ride with the reply and the next
                                 request, so on the wire it is one round
                                 trip, and the rest is goroutine handoffs)
  exchange, dial + disconnect    each exchange dials and closes its own
                                 connection (the handler's default);
                                 baseline: connect, echo, close. Target: 0.9

Each workload runs for --duration (or --count operations). A progress line
goes to stderr; stdout carries only the results. "p2pnode bench dht" (or
--dht) runs the DHT workload instead.`

// benchOptions are bench's flags.
type benchOptions struct {
	duration time.Duration
	count    int
	payload  int
	asJSON   bool
	dht      bool
	dhtOpts  dhtBenchOptions
}

// newBenchCmd builds "bench" and "bench dht".
func newBenchCmd(a *app) *cobra.Command {
	o := benchOptions{duration: 2 * time.Second, payload: 256,
		dhtOpts: dhtBenchOptions{nodes: 100, lookups: 100, timeout: 5 * time.Minute}}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and latency against a bare go-libp2p baseline",
		Long:  benchLong,
		Example: `  p2pnode bench
  p2pnode bench --duration 10s --json
  p2pnode bench --count 500
  p2pnode bench dht --nodes 100 --lookups 200`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			if o.dht {
				return runDHTBench(a, o)
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
	return cmd
}

func (o *benchOptions) validate() error {
	switch {
	case o.duration <= 0:
		return usageErrorf("--duration must be positive (got %s)", o.duration)
	case o.count < 0:
		return usageErrorf("--count must not be negative (got %d)", o.count)
	case o.payload < 1 || o.payload > 1<<20:
		return usageErrorf("--payload must be between 1 and 1048576 bytes (got %d)", o.payload)
	}
	return o.dhtOpts.validate()
}

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
		{"send_acked_1", "acked send, 1 in flight", "echo round trip, one stream", "msg/s", 0.8, 1000,
			func(ctx context.Context, size int) (*bench.Workload, error) { return sendAcked(ctx, 1, size) }},
		{"send_acked_64", "acked send, 64 in flight", "echo round trip, one stream", "msg/s", 2, 1000,
			func(ctx context.Context, size int) (*bench.Workload, error) { return sendAcked(ctx, 64, size) }},
		{"exchange_kept_conn", "exchange, kept connection", "echo round trip, one stream", "exchanges/s", 0.5, 200,
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
	Target   float64 `json:"target,omitempty"`
	Met      *bool   `json:"met,omitempty"`
}

func runBench(a *app, o benchOptions) error {
	log, err := newLogger(a.log, a.err)
	if err != nil {
		return err
	}
	routeLibp2pLogs(log)
	ctx := context.Background()
	prog := newProgress(a.err)
	cases := benchCases()
	var results []benchResult
	for i, c := range cases {
		step := fmt.Sprintf("bench %d/%d: %s", i+1, len(cases), c.title)
		prog.set(step, "setting up")
		w, err := c.setup(ctx, o.payload)
		if err != nil {
			prog.done()
			return fmt.Errorf("bench %s: %w", c.title, err)
		}
		n, ours, base, err := measure(w, c.chunk, o.count, o.duration, func(n int) {
			prog.set(step, fmt.Sprintf("%d operations", n))
		})
		w.Close()
		if err != nil {
			prog.done()
			return fmt.Errorf("bench %s: %w", c.title, err)
		}
		r := benchResult{Name: c.name, Title: c.title, Baseline: c.baseline, Unit: c.unit, Ops: n,
			Rate: bench.Rate(n, ours), BareRate: bench.Rate(n, base), Target: c.target}
		r.Ratio = base.Seconds() / ours.Seconds()
		if c.target > 0 {
			met := r.Ratio >= c.target
			r.Met = &met
		}
		results = append(results, r)
	}
	prog.done()
	if o.asJSON {
		enc := json.NewEncoder(a.out)
		return enc.Encode(map[string]any{"payload_bytes": o.payload, "workloads": results})
	}
	return printBenchTable(a.out, o, results)
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

func printBenchTable(w io.Writer, o benchOptions, results []benchResult) error {
	size := fmt.Sprintf("each workload for %s", o.duration)
	if o.count > 0 {
		size = fmt.Sprintf("%d operations each", o.count)
	}
	fmt.Fprintf(w, "p2pnode bench: %d-byte messages on 127.0.0.1, %s, interleaved with a bare go-libp2p baseline\n\n", o.payload, size)
	const row = "%-28s %7s %10s %10s %6s  %-7s %-5s  %s\n"
	fmt.Fprintf(w, row, "workload", "ops", "ours/s", "bare/s", "ratio", "target", "", "baseline")
	for _, r := range results {
		target, verdict := "", ""
		if r.Met != nil {
			target, verdict = fmt.Sprintf(">= %.1f", r.Target), "met"
			if !*r.Met {
				verdict = "BELOW"
			}
		}
		fmt.Fprintf(w, row, r.Title, strconv.Itoa(r.Ops), fmt.Sprintf("%.0f", r.Rate), fmt.Sprintf("%.0f", r.BareRate),
			fmt.Sprintf("%.3f", r.Ratio), target, verdict, r.Baseline)
	}
	_, err := fmt.Fprintln(w, "\nratio = our rate / the baseline's, measured in this run; compare ratios, not rates, across machines.")
	return err
}

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
