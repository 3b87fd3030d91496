package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/bitvmx/go-bitvmx-p2p/internal/bench"
)

// The efficiency workloads (issue 13): CPU per exchange as peers grow,
// memory per idle connection, and the exchange against gRPC over mutual
// TLS. Each runs beside its baseline in the same process.

const scalingBenchLong = `bench scaling measures the CPU time of an exchange (request and reply
through the exchange handler over kept connections) as the number of peers
grows: one handler has one exchange in flight with each of --peers others
at once. The baseline is a bare go-libp2p host doing echo round trips on
one stream to each of as many bare hosts. Cost is the process's CPU time
(user + system, every thread, both ends of every connection, garbage
collection included) divided by the operations, in alternating chunks of
ours and the baseline. Target: at 32 peers, ours <= 1.5x the baseline.

The "p2p alone" rows are the reference: the same workload between p2p
nodes, without the handler (the hub sends each peer a message, the peer
answers it, both acknowledged, the acks riding with the next message the
other way, as an exchange's do). The handler rides on the node, so its
ratio can reach at most that row's.`

const memoryBenchLong = `bench memory measures what an idle connection costs once it has carried
one message: one host and --conns others start, the process's heap in use
plus goroutine stacks in use is read after a garbage collection, the first
host exchanges one message with each of the others, and the memory is read
again. The difference divided by --conns is the cost per connection (both
of its ends: every host runs in this process). Ours: one exchange through
the handler, both sides keeping the connection, read at once and again
once the idle stream has closed (quiet: --stream-idle-timeout, shortened
to 20ms here); and one acked message between two p2p nodes. Baseline: one
echo between bare go-libp2p hosts, on a stream then closed.

The first rows use the connections one after another, each once the one
before is done: what an idle connection keeps. Target: ours <= 1.0x. The
"at once" rows send every connection's message at the same time, ours and
the baseline alike; they add what such a burst leaves behind (the runtime
keeps heap and stack spans that the burst's short-lived objects and
goroutines left partly used, and reuses them later) and have no target.

Each round measures every kind; --rounds sets the rounds and the results
are their means (--duration and --count do not apply).`

const grpcBenchLong = `bench grpc compares the exchange with a unary gRPC call (grpc-go) over
mutual TLS 1.3 on 127.0.0.1: each side has a self-signed certificate made
in memory and trusts only the other's. The certificates are ed25519 and
the key exchange X25519, what our Noise handshake uses here, so that the
ratio compares the protocols rather than the curves (Go's default TLS key
exchange, X25519 with ML-KEM, costs gRPC more). The call carries --payload
bytes and its answer echoes them; so do the exchange's request and reply.

  kept connection, 1 in flight   exchanges over a connection both handlers
                                 keep, one at a time; gRPC: calls on one
                                 kept client connection. Target: 1.66
  kept connection, 64 in flight  the same with 64 outstanding (the
                                 handler's MaxConcurrentPerPeer 64).
                                 Target: 1.66
  new connection per call        each exchange dials and closes its own
                                 connection (the handler's default); gRPC:
                                 dial, TLS handshake, call, close.
                                 Target: 1.0

Each of the three has a reference row, "libp2p alone": bare go-libp2p
(echo round trips on kept streams; connect, echo, close) in place of the
handler, against the same gRPC calls. The handler rides on go-libp2p, so
its ratio can reach at most the reference's.`

// bindEfficiencyFlags binds the flags of every efficiency workload, for
// bench --all.
func bindEfficiencyFlags(fs *pflag.FlagSet, o *benchOptions) {
	bindScalingFlags(fs, o)
	bindMemoryFlags(fs, o)
}

func bindScalingFlags(fs *pflag.FlagSet, o *benchOptions) {
	fs.IntSliceVar(&o.peers, "peers", o.peers, "peer counts for the scaling workload (1 to 128 each)")
}

func bindMemoryFlags(fs *pflag.FlagSet, o *benchOptions) {
	fs.IntVar(&o.conns, "conns", o.conns, fmt.Sprintf("idle connections for the memory workload (1 to %d)", bench.MaxIdleConns))
	fs.IntVar(&o.rounds, "rounds", o.rounds, "rounds of the memory workload, whose mean it prints (1 to 100)")
}

// newEfficiencyCmds builds "bench scaling", "bench memory" and "bench grpc".
func newEfficiencyCmds(a *app, o *benchOptions) []*cobra.Command {
	sub := func(use, short, long, example string, which int, bind func(*pflag.FlagSet, *benchOptions)) *cobra.Command {
		c := &cobra.Command{Use: use, Short: short, Long: long, Example: example, Args: checkArgs(cobra.NoArgs),
			RunE: func(*cobra.Command, []string) error {
				if err := o.validate(); err != nil {
					return err
				}
				return runWorkloads(a, *o, which)
			}}
		c.Flags().IntVar(&o.payload, "payload", o.payload, "message size in `BYTES`")
		if bind != nil {
			bind(c.Flags(), o)
		}
		return c
	}
	return []*cobra.Command{
		sub("scaling", "CPU per exchange with 1, 8 and 32 peers against bare go-libp2p", scalingBenchLong,
			"  p2pnode bench scaling\n  p2pnode bench scaling --peers 1,8,32,64 --duration 10s --json",
			workloadsScaling, bindScalingFlags),
		sub("memory", "Memory per idle connection against bare go-libp2p", memoryBenchLong,
			"  p2pnode bench memory\n  p2pnode bench memory --conns 256 --rounds 5",
			workloadsMemory, bindMemoryFlags),
		sub("grpc", "Exchanges against unary gRPC calls over mutual TLS", grpcBenchLong,
			"  p2pnode bench grpc\n  p2pnode bench grpc --duration 5s --json",
			workloadsGRPC, nil),
	}
}

// validateEfficiency checks the efficiency workloads' flags.
func (o *benchOptions) validateEfficiency() error {
	if len(o.peers) == 0 {
		return usageErrorf("--peers needs at least one peer count")
	}
	for _, n := range o.peers {
		if n < 1 || n > 128 {
			return usageErrorf("--peers must be between 1 and 128 each (got %d)", n)
		}
	}
	if o.conns < 1 || o.conns > bench.MaxIdleConns {
		return usageErrorf("--conns must be between 1 and %d (got %d)", bench.MaxIdleConns, o.conns)
	}
	if o.rounds < 1 || o.rounds > 100 {
		return usageErrorf("--rounds must be between 1 and 100 (got %d)", o.rounds)
	}
	return nil
}

// Which workloads runWorkloads runs.
const (
	workloadsScaling = 1 << iota
	workloadsGRPC
	workloadsMemory
	workloadsDefault // bench's own four workloads
)

// costResult is one row of a workload measured as a cost: the lower, the
// better.
type costResult struct {
	Name     string  `json:"name"`
	Title    string  `json:"title"`
	Baseline string  `json:"baseline"`
	Unit     string  `json:"unit"`
	Ops      int     `json:"ops"` // operations; for memory, rounds
	Ours     float64 `json:"ours"`
	Bare     float64 `json:"bare"`
	Ratio    float64 `json:"ratio"`            // ours / bare
	Target   float64 `json:"target,omitempty"` // the highest ratio the target allows
	Met      *bool   `json:"met,omitempty"`
	// Goroutines per connection, for memory.
	OursGoroutines float64 `json:"ours_goroutines,omitempty"`
	BareGoroutines float64 `json:"bare_goroutines,omitempty"`
}

// judge sets Ratio, and Met when there is a target.
func (r *costResult) judge(target float64) {
	if r.Bare > 0 {
		r.Ratio = r.Ours / r.Bare
	}
	if target > 0 {
		met := r.Bare > 0 && r.Ratio <= target
		r.Target, r.Met = target, &met
	}
}

// runWorkloads runs the workloads of which (workloads* bits) and prints
// their tables, or one JSON object holding them all.
func runWorkloads(a *app, o benchOptions, which int) error {
	log, err := newLogger(a.log, a.err)
	if err != nil {
		return err
	}
	routeLibp2pLogs(log)
	ctx := context.Background()
	prog := newProgress(a.err)
	defer prog.done()
	out := map[string]any{"payload_bytes": o.payload}
	var tables []func(io.Writer)
	if which&workloadsDefault != 0 {
		res, err := runCases(ctx, "bench", benchCases(), o, prog)
		if err != nil {
			return err
		}
		out["workloads"] = res
		tables = append(tables, func(w io.Writer) { _ = printBenchTable(w, o, res) })
	}
	if which&workloadsScaling != 0 {
		res, err := runScaling(ctx, o, prog)
		if err != nil {
			return err
		}
		out["scaling"] = res
		tables = append(tables, func(w io.Writer) {
			fmt.Fprintf(w, "p2pnode bench scaling: %d-byte exchanges over kept connections, one in flight per peer, %s, interleaved with bare echo round trips\n\n", o.payload, strings.Replace(o.size(), "each workload", "each peer count", 1))
			printCostRows(w, res, "µs CPU/op")
			fmt.Fprintln(w, "\nratio = our CPU time per operation / the baseline's (process user + system, both ends): the lower, the better.\np2p alone = the same messages between p2p nodes, without the handler: the handler rides on them, so its\nratio can reach at most that row's.")
		})
	}
	if which&workloadsGRPC != 0 {
		res, err := runCases(ctx, "bench grpc", grpcCases(), o, prog)
		if err != nil {
			return err
		}
		out["grpc"] = res
		tables = append(tables, func(w io.Writer) {
			fmt.Fprintf(w, "p2pnode bench grpc: %d-byte messages on 127.0.0.1, %s, interleaved with grpc-go over mutual TLS 1.3\n\n", o.payload, o.size())
			printRateRows(w, res, "grpc/s")
			fmt.Fprintln(w, "\nratio = our rate / gRPC's, measured in this run. libp2p alone = bare go-libp2p in place of ours:\nthe handler rides on it, so its ratio can reach at most that row's.\n"+cpuFootnote)
		})
	}
	if which&workloadsMemory != 0 {
		res, err := runMemory(ctx, o, prog)
		if err != nil {
			return err
		}
		out["memory"] = res
		tables = append(tables, func(w io.Writer) {
			fmt.Fprintf(w, "p2pnode bench memory: %d idle connections that carried one %d-byte message, mean of %s\n\n", o.conns, o.payload, plural(res[0].Ops, "round"))
			printCostRows(w, res, "KiB/conn")
			fmt.Fprintf(w, "goroutines per connection: %s\n", goroutineList(res))
			fmt.Fprintln(w, "\nKiB/conn = heap in use + stacks in use after GC, per connection, both ends.\nratio = ours / the baseline's: the lower, the better.")
		})
	}
	prog.done()
	if o.asJSON {
		return json.NewEncoder(a.out).Encode(out)
	}
	// The tables ignore write errors; the first one is kept here, so that
	// output lost (a closed pipe) is an error and not exit status 0.
	w := &stickyWriter{w: a.out}
	for i, p := range tables {
		if i > 0 {
			fmt.Fprintln(w)
		}
		p(w)
	}
	return w.err
}

// runScaling measures CPU per exchange at each of o.peers, then the same
// with p2p nodes in place of the handlers: the reference, as bench grpc's
// "libp2p alone" rows are.
func runScaling(ctx context.Context, o benchOptions, prog *progress) ([]costResult, error) {
	kinds := []struct {
		name, title string
		target      float64 // at 32 peers, where the issue sets it
		workload    func(ctx context.Context, peers, size int) (*bench.Workload, error)
	}{
		{"exchange_cpu_%d_peers", "exchange CPU, %s", 1.5, bench.ExchangeScaling},
		{"exchange_cpu_%d_peers_p2p", "p2p alone, %s", 0, bench.NodeExchangeScaling},
	}
	var results []costResult
	steps := len(kinds) * len(o.peers)
	for _, k := range kinds {
		for _, n := range o.peers {
			title := fmt.Sprintf(k.title, plural(n, "peer"))
			step := fmt.Sprintf("bench scaling %d/%d: %s", len(results)+1, steps, title)
			prog.set(step, "setting up")
			w, err := k.workload(ctx, n, o.payload)
			if err != nil {
				return nil, fmt.Errorf("bench %s: %w", title, err)
			}
			// Chunks long enough that each holds many garbage collections,
			// whose cost then falls on the side that made the garbage.
			ops, ours, base, err := measure(w, max(200, 40*n), o.count, o.duration, func(done int) {
				prog.set(step, fmt.Sprintf("%d operations", done))
			})
			w.Close()
			if err != nil {
				return nil, fmt.Errorf("bench %s: %w", title, err)
			}
			r := costResult{Name: fmt.Sprintf(k.name, n), Title: title,
				Baseline: "echo round trip, one stream per peer", Unit: "µs CPU/op", Ops: ops,
				Ours: micros(ours) / float64(ops), Bare: micros(base) / float64(ops)}
			target := 0.0
			if n == 32 {
				target = k.target
			}
			r.judge(target)
			results = append(results, r)
		}
	}
	return results, nil
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// grpcCases are bench grpc's workloads.
func grpcCases() []benchCase {
	return []benchCase{
		{"grpc_kept_conn_1", "kept connection, 1 in flight", "unary call on one kept connection", "ops/s", 1.66, 200,
			func(ctx context.Context, size int) (*bench.Workload, error) { return bench.GRPCKeptConn(ctx, size, 1) }},
		{"grpc_kept_conn_64", "kept connection, 64 in flight", "unary calls, 64 outstanding, one connection", "ops/s", 1.66, 1000,
			func(ctx context.Context, size int) (*bench.Workload, error) { return bench.GRPCKeptConn(ctx, size, 64) }},
		{"grpc_new_conn", "new connection per call", "dial, TLS 1.3 handshake, unary call, close", "ops/s", 1.0, 10,
			bench.GRPCNewConn},
		// The references: bare go-libp2p in place of ours, against the same
		// calls. The handler rides on go-libp2p, so each row above can reach
		// at most its reference's ratio.
		{"grpc_kept_conn_1_libp2p", "libp2p alone, 1 in flight", "unary call on one kept connection", "ops/s", 0, 200,
			func(ctx context.Context, size int) (*bench.Workload, error) {
				return bench.GRPCBareKeptConn(ctx, size, 1)
			}},
		{"grpc_kept_conn_64_libp2p", "libp2p alone, 64 in flight", "unary calls, 64 outstanding, one connection", "ops/s", 0, 1000,
			func(ctx context.Context, size int) (*bench.Workload, error) {
				return bench.GRPCBareKeptConn(ctx, size, 64)
			}},
		{"grpc_new_conn_libp2p", "libp2p alone, new connection", "dial, TLS 1.3 handshake, unary call, close", "ops/s", 0, 10,
			bench.GRPCBareNewConn},
	}
}

// idleRow is a row of bench memory: a kind of idle connection of ours,
// used as the baseline's is.
type idleRow struct {
	kind        bench.IdleKind
	use         bench.IdleUse
	name, title string
}

func idleRows() []idleRow {
	return []idleRow{
		{bench.IdleExchange, bench.OneAtATime, "idle_conn_exchange", "idle conn, 1 exchange"},
		{bench.IdleExchangeQuiet, bench.OneAtATime, "idle_conn_exchange_quiet", "idle conn, 1 exchange, quiet"},
		{bench.IdleAckedSend, bench.OneAtATime, "idle_conn_acked_send", "idle conn, 1 acked send"},
		{bench.IdleExchange, bench.AllAtOnce, "idle_conn_exchange_at_once", "at once: 1 exchange"},
		{bench.IdleExchangeQuiet, bench.AllAtOnce, "idle_conn_exchange_quiet_at_once", "at once: 1 exchange, quiet"},
		{bench.IdleAckedSend, bench.AllAtOnce, "idle_conn_acked_send_at_once", "at once: 1 acked send"},
	}
}

// runMemory measures memory per idle connection, ours and bare, in
// rounds. The target is judged on connections used one at a time, what an
// idle connection keeps; the rows of connections all used at once add
// what such a burst leaves behind, against a baseline used the same way.
func runMemory(ctx context.Context, o benchOptions, prog *progress) ([]costResult, error) {
	rounds := o.rounds
	rows := idleRows()
	type measured struct {
		kind bench.IdleKind
		use  bench.IdleUse
	}
	all := []measured{{bench.IdleBareEcho, bench.OneAtATime}, {bench.IdleBareEcho, bench.AllAtOnce}}
	for _, r := range rows {
		all = append(all, measured{r.kind, r.use})
	}
	// A small untimed round first: the libraries' one-time state (pools,
	// caches, registries) is then not charged to whichever kind runs first.
	prog.set("bench memory: warming up", "2 connections of each kind")
	for _, m := range all {
		if _, err := bench.IdleConnMemory(ctx, m.kind, m.use, 2, o.payload); err != nil {
			return nil, fmt.Errorf("bench memory: warm-up: %w", err)
		}
	}
	sums := make([]bench.ConnMemory, len(all))
	for r := range rounds {
		step := fmt.Sprintf("bench memory: round %d/%d", r+1, rounds)
		prog.set(step, fmt.Sprintf("%d connections", o.conns))
		for i := range all {
			// Every other round in reverse order, so that neither side always
			// follows the other.
			if r%2 == 1 {
				i = len(all) - 1 - i
			}
			m, err := bench.IdleConnMemory(ctx, all[i].kind, all[i].use, o.conns, o.payload)
			if err != nil {
				return nil, fmt.Errorf("bench memory: %w", err)
			}
			sums[i].Bytes += m.Bytes
			sums[i].Goroutines += m.Goroutines
		}
	}
	n := float64(rounds)
	var results []costResult
	for i, row := range rows {
		ours, bare, baseline, target := sums[i+2], sums[0], "1 echo, bare go-libp2p", 1.0
		if row.use == bench.AllAtOnce {
			bare, baseline, target = sums[1], "1 echo each, all at once", 0
		}
		r := costResult{Name: row.name, Title: row.title, Baseline: baseline, Unit: "KiB/conn", Ops: rounds,
			Ours: ours.Bytes / n / 1024, Bare: bare.Bytes / n / 1024,
			OursGoroutines: ours.Goroutines / n, BareGoroutines: bare.Goroutines / n}
		r.judge(target)
		results = append(results, r)
	}
	return results, nil
}
