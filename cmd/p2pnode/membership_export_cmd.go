package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

func newMembershipExportCmd(a *app) *cobra.Command {
	var (
		current, out string
		asJSON       bool
	)
	cmd := &cobra.Command{
		Use:   "export FILE --current FILE --out ALLOWLIST",
		Short: "Write the members of a verified document as an allowlist YAML file",
		Long: `export verifies FILE as verify does (against --current, or as version 1
without it) and, only if it is valid, writes its members to the allowlist
YAML file --out (atomically; roles are left out, relay settings kept). A
node run on that file (--allowlist) picks the change up on SIGHUP or with
run --watch: this is how a node that does not run with --membership
follows the membership (one that does applies versions itself, and
"submit" hands it one). Keep the previous document: export does not
remember which version the file came from, so it cannot refuse an older
one.`,
		Example: `  p2pnode membership export membership-2.pb --current membership-1.pb --out allowlist.yaml`,
		Args:    checkArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			file := args[0]
			if out == "" {
				return usageErrorf("export needs --out ALLOWLIST")
			}
			d, err := membership.ReadFile(file)
			if err != nil {
				return err
			}
			if current == "" {
				_, err = membership.VerifyGenesis(d, time.Now())
			} else {
				var cur *membership.Document
				if cur, err = membership.ReadFile(current); err != nil {
					return err
				}
				_, err = membership.VerifyNext(cur, d, time.Now())
			}
			if err != nil {
				return fmt.Errorf("%s is not valid, not exporting it: %w", file, errors.Unwrap(err))
			}
			l, err := d.Allowlist()
			if err != nil {
				return err
			}
			if err := l.Save(out); err != nil {
				return err
			}
			if asJSON {
				return encodeJSON(a.out, map[string]any{"file": file, "version": d.Version(), "hash": d.Hash().String(),
					"allowlist": out, "peers": l.Len()})
			}
			_, err = fmt.Fprintf(a.out, "exported version %d of %s to %s (%s)\n", d.Version(), file, out, plural(l.Len(), "peer"))
			return err
		},
	}
	cmd.Flags().StringVar(&current, "current", "", "the current document `FILE` (default: check FILE as version 1)")
	cmd.Flags().StringVar(&out, "out", "", "allowlist YAML `FILE` to write")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
