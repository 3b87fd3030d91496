package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// A single-valued flag given twice is a usage mistake: pflag let the last
// win, and "allowlist add F --id A --id B" added B alone.
func TestRepeatedSingleFlagRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, other := newKey(t, dir, "other.key")
	file := filepath.Join(dir, "allowlist.yaml")
	r := runInProc("allowlist", "add", file, "--id", testPeer, "--id", other)
	want := `--id is given twice (first "` + testPeer + `"): it takes one value`
	if r.code != exitUsage || !strings.Contains(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("allowlist add --id twice: %+v; want exit %d and %q", r, exitUsage, want)
	}
	if _, err := os.Lstat(file); err == nil {
		t.Fatal("allowlist add --id twice wrote the file")
	}
	// A global flag too; list flags and booleans stay repeatable.
	if r := runInProc("version", "--log-level", "warn", "--log-level", "error"); r.code != exitUsage || !strings.Contains(r.stderr, "--log-level is given twice") {
		t.Fatalf("--log-level twice: %+v", r)
	}
	if r := runInProc("version", "--json", "--json"); r.code != 0 {
		t.Fatalf("--json twice: %+v", r)
	}
}

// Every single-valued flag of every command refuses a second value; list
// flags (--listen, --addr of allowlist add...) take each.
func TestEverySingleFlagRefusesRepeat(t *testing.T) {
	t.Parallel()
	root := newRootCmd(&app{})
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		check := func(f *pflag.Flag) {
			_, list := f.Value.(pflag.SliceValue)
			_, once := f.Value.(*onceValue)
			if single := !list && f.Value.Type() != "bool"; single != once {
				t.Errorf("%s --%s (%s): refuses a repeat %v, want %v", c.CommandPath(), f.Name, f.Value.Type(), once, single)
			}
		}
		c.Flags().VisitAll(check)
		c.PersistentFlags().VisitAll(check)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	// The wrapper leaves the help as it was: a zero default is not shown,
	// and no flag shows two defaults.
	var help func(*cobra.Command)
	help = func(c *cobra.Command) {
		for _, l := range strings.Split(c.Flags().FlagUsages()+c.PersistentFlags().FlagUsages(), "\n") {
			if strings.Contains(l, "(default 0s)") || strings.Count(l, "(default ") > 1 {
				t.Errorf("%s: %q", c.CommandPath(), strings.TrimSpace(l))
			}
		}
		for _, sub := range c.Commands() {
			help(sub)
		}
	}
	help(root)
	if r := runInProc("allowlist", "add", t.TempDir()+"/a.yaml", "--id", testPeer, "--addr", "10.0.0.1", "--addr", "10.0.0.2"); r.code != 0 {
		t.Fatalf("--addr twice: %+v", r)
	}
}
