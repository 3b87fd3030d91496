package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The tables bench prints: workloads measured as rates (the higher, the
// better) and as costs (the lower, the better).

// printBenchTable prints the results of bench's own four workloads.
func printBenchTable(w io.Writer, o benchOptions, results []benchResult) error {
	fmt.Fprintf(w, "p2pnode bench: %d-byte messages on 127.0.0.1, %s, interleaved with a bare go-libp2p baseline\n\n", o.payload, o.size())
	printRateRows(w, results, "bare/s")
	_, err := fmt.Fprintln(w, "\nratio = our rate / the baseline's, measured in this run; compare ratios, not rates, across machines.\n"+cpuFootnote)
	return err
}

// cpuFootnote explains the cpu× column of the rate tables.
const cpuFootnote = "cpu× = our CPU time per operation / the baseline's (user + system, the whole process): lower is better; it moves less than the rates when other jobs share the cores."

// size says how long each workload ran.
func (o benchOptions) size() string {
	if o.count > 0 {
		return fmt.Sprintf("%d operations each", o.count)
	}
	return fmt.Sprintf("each workload for %s", o.duration)
}

// printRateRows prints a table of workloads measured as rates: the
// higher, the better. baseHeader heads the baseline's column.
func printRateRows(w io.Writer, results []benchResult, baseHeader string) {
	const row = "%-28s %7s %10s %10s %6s  %-7s %-5s %6s  %s\n"
	fmt.Fprintf(w, row, "workload", "ops", "ours/s", baseHeader, "ratio", "target", "", "cpu×", "baseline")
	for _, r := range results {
		target, verdict := "", ""
		if r.Met != nil {
			target, verdict = ">= "+strconv.FormatFloat(r.Target, 'f', -1, 64), "met"
			if !*r.Met {
				verdict = "BELOW"
			}
		}
		cpu := "-"
		if r.CPURatio > 0 {
			cpu = fmt.Sprintf("%.2f", r.CPURatio)
		}
		fmt.Fprintf(w, row, r.Title, strconv.Itoa(r.Ops), fmt.Sprintf("%.0f", r.Rate), fmt.Sprintf("%.0f", r.BareRate),
			fmt.Sprintf("%.3f", r.Ratio), target, verdict, cpu, r.Baseline)
	}
}

// goroutineList says how many goroutines each connection holds, ours then
// the baseline's.
func goroutineList(res []costResult) string {
	s := ""
	for _, r := range res {
		s += fmt.Sprintf("%.1f (%s), ", r.OursGoroutines, strings.TrimPrefix(r.Title, "idle conn, "))
	}
	return s + fmt.Sprintf("bare %.1f", res[0].BareGoroutines)
}

// printCostRows prints a table of workloads measured as costs: the lower,
// the better.
func printCostRows(w io.Writer, results []costResult, unit string) {
	const row = "%-28s %7s %10s %10s %6s  %-7s %-5s  %s\n"
	fmt.Fprintf(w, row, "workload", "ops", "ours", "bare", "ratio", "target", "", "baseline")
	for _, r := range results {
		target, verdict := "", ""
		if r.Met != nil {
			target, verdict = "<= "+strconv.FormatFloat(r.Target, 'f', -1, 64), "met"
			if !*r.Met {
				verdict = "ABOVE"
			}
		}
		fmt.Fprintf(w, row, r.Title, strconv.Itoa(r.Ops), fmt.Sprintf("%.1f", r.Ours), fmt.Sprintf("%.1f", r.Bare),
			fmt.Sprintf("%.3f", r.Ratio), target, verdict, r.Baseline)
	}
	fmt.Fprintf(w, "(ours and bare in %s)\n", unit)
}

// stickyWriter passes writes on until one fails, then fails every later one
// with the same error, which err keeps.
type stickyWriter struct {
	w   io.Writer
	err error
}

func (s *stickyWriter) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.w.Write(p)
	s.err = err
	return n, err
}
