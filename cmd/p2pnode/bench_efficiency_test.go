package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// benchTimeout bounds one tiny run of the efficiency workloads: --all sets
// up some fifteen hosts, one after the other, under the race detector.
const benchTimeout = 3 * time.Minute

// runBenchCLI is runCLI with room for a whole bench run.
func runBenchCLI(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = childEnv()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("p2pnode %v: %v", args, err)
	}
	return result{out.String(), errOut.String(), code}
}

// Each efficiency workload runs with a tiny count and prints a row with a
// ratio for every case; no speed is asserted.
func TestBenchEfficiencyTiny(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		rows []string
	}{
		{[]string{"bench", "scaling", "--count", "4", "--peers", "1,2"},
			[]string{"exchange CPU, 1 peer", "exchange CPU, 2 peers", "p2p alone, 1 peer", "p2p alone, 2 peers"}},
		{[]string{"bench", "memory", "--conns", "2", "--rounds", "1"},
			[]string{"idle conn, 1 exchange", "idle conn, 1 exchange, quiet", "idle conn, 1 acked send",
				"at once: 1 exchange", "at once: 1 exchange, quiet", "at once: 1 acked send"}},
		{[]string{"bench", "grpc", "--count", "4", "--payload", "64"},
			[]string{"kept connection, 1 in flight", "kept connection, 64 in flight", "new connection per call",
				"libp2p alone, 1 in flight", "libp2p alone, 64 in flight", "libp2p alone, new connection"}},
	}
	for _, tc := range cases {
		t.Run(tc.args[1], func(t *testing.T) {
			t.Parallel()
			r := runBenchCLI(t, tc.args...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			for _, w := range tc.rows {
				found := false
				for _, l := range lines(r.stdout) {
					if f := strings.Fields(strings.TrimPrefix(l, w)); strings.HasPrefix(l, w) && len(f) >= 4 && strings.Contains(f[3], ".") {
						found = true
					}
				}
				if !found {
					t.Errorf("no row with a ratio for %q in\n%s", w, r.stdout)
				}
			}
		})
	}
}

// --all --json is one object with every table, each row measured.
func TestBenchAllJSON(t *testing.T) {
	t.Parallel()
	r := runBenchCLI(t, "bench", "--all", "--json", "--count", "2", "--peers", "2", "--conns", "2", "--rounds", "1")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	type row struct {
		Name  string  `json:"name"`
		Ops   int     `json:"ops"`
		Ours  float64 `json:"ours"`
		Rate  float64 `json:"rate"`
		Ratio float64 `json:"ratio"`
	}
	var res struct {
		Workloads, Scaling, GRPC, Memory []row
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%v: %q", err, r.stdout)
	}
	if len(res.Workloads) != 4 || len(res.Scaling) != 2 || len(res.GRPC) != 6 || len(res.Memory) != 6 {
		t.Fatalf("tables %+v", res)
	}
	for _, w := range append(append(res.Workloads, res.Scaling...), res.GRPC...) {
		if w.Ops != 2 || w.Ratio <= 0 {
			t.Errorf("workload %+v", w)
		}
	}
	for _, w := range res.Memory {
		if w.Ops != 1 || w.Name == "" {
			t.Errorf("memory %+v", w)
		}
	}
}

// Bad values of the efficiency flags: one line, a usage error, nothing on
// stdout.
func TestBenchEfficiencyErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "scaling", "--peers", "0"}, "--peers must be between 1 and 128"},
		{[]string{"bench", "scaling", "--peers", "x"}, "invalid argument"},
		{[]string{"bench", "memory", "--conns", "0"}, "--conns must be between 1 and 512"},
		{[]string{"bench", "memory", "--rounds", "0"}, "--rounds must be between 1 and 100"},
		{[]string{"bench", "grpc", "--payload", "0"}, "--payload must be between"},
		{[]string{"bench", "--all", "--dht"}, "--dht and --all"},
	} {
		r := runCLI(t, dir, tc.args...)
		if r.code != exitUsage {
			t.Errorf("%v: exit %d, want %d", tc.args, r.code, exitUsage)
		}
		oneErrorLine(t, r, tc.want)
		if r.stdout != "" {
			t.Errorf("%v: stdout %q", tc.args, r.stdout)
		}
	}
}
