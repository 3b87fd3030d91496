package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// onceValue is the Value of a flag that takes one value. It refuses a
// second one: pflag lets the last win, so "allowlist add F --id A --id B"
// added B alone, silently, where the operator meant both or mistyped one.
type onceValue struct {
	pflag.Value
	name  string
	first string // as given, for the error
	set   bool
}

// Set sets the value the first time; pflag reports the error of a second
// as an invalid flag value, a usage mistake.
func (v *onceValue) Set(s string) error {
	if v.set {
		return fmt.Errorf("--%s is given twice (first %q): it takes one value", v.name, v.first)
	}
	v.set, v.first = true, s
	return v.Value.Set(s)
}

// refuseRepeatedFlags makes every single-valued flag of cmd and its
// subcommands refuse a second value. List flags (repeatable by design) are
// left as they are, and so are booleans: "--json --json" asks for the
// same thing twice.
func refuseRepeatedFlags(cmd *cobra.Command) {
	wrap := func(f *pflag.Flag) {
		if _, list := f.Value.(pflag.SliceValue); list || f.Value.Type() == "bool" {
			return
		}
		if _, done := f.Value.(*onceValue); !done {
			f.Value = &onceValue{Value: f.Value, name: f.Name}
			// pflag leaves a zero default out of the help by the value's
			// concrete type, which the wrapper hides; its fallback knows
			// "0" but not a duration's "0s", and printed "(default 0s)".
			if f.DefValue == "0s" {
				f.DefValue = "0"
			}
		}
	}
	cmd.Flags().VisitAll(wrap)
	cmd.PersistentFlags().VisitAll(wrap)
	for _, c := range cmd.Commands() {
		refuseRepeatedFlags(c)
	}
}
