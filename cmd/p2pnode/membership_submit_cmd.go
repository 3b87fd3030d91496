package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// newMembershipSubmitCmd builds "membership submit": the one membership
// command that uses the running node.
func newMembershipSubmitCmd(a *app) *cobra.Command {
	var (
		t      nodeTarget
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "submit FILE",
		Short: "Hand a signed next version to the running node, which applies it and spreads it",
		Long: `submit sends FILE, a signed membership document, to the running node
(started with run --membership) through its control socket. The node
applies it if it is the valid next version of the one in force (as
"verify --current" checks: next version, linked to the current hash, not
expired, signed by at least M members of the current version), saves it
in its data directory, puts its members in force as the allowlist, prints
a membership_applied event, and pushes it to the connected members, which
check it the same way.

Exit 0: applied; the version and hash now in force are printed. Exit 1:
refused (the node's reason, e.g. too few signatures), or no node, or a node
without --membership; nothing changed.

` + controlLong,
		Example: `  p2pnode membership verify membership-2.pb --current membership-1.pb
  p2pnode membership submit membership-2.pb --config /etc/p2pnode/p2pnode.yaml
  p2pnode membership submit membership-2.pb --data-dir /var/lib/p2pnode --json`,
		Args: checkArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			file := args[0]
			d, err := membership.ReadFile(file)
			if err != nil {
				return err
			}
			doc, err := d.Encode()
			if err != nil {
				return err
			}
			c, err := t.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			res, err := c.SubmitMembership(ctx, doc)
			switch {
			case errors.Is(err, control.ErrInvalid):
				return fmt.Errorf("the node refused %s: %s", file, remoteText(err, control.ErrInvalid))
			case errors.Is(err, control.ErrUnsupported):
				return fmt.Errorf("submit: the node at %s is %s", c.Path(), remoteText(err, control.ErrUnsupported))
			case err != nil:
				return fmt.Errorf("submit: %w", err)
			}
			if asJSON {
				j := struct {
					Applied bool     `json:"applied"`
					Version uint64   `json:"version"`
					Hash    string   `json:"hash"`
					Counted []string `json:"counted"`
					Needed  int32    `json:"needed"`
				}{true, res.Version, res.Hash, res.Counted, res.Needed}
				if j.Counted == nil {
					j.Counted = []string{}
				}
				return encodeJSON(a.out, j)
			}
			_, err = fmt.Fprintf(a.out, "applied membership version %d (hash %s): %s, %d needed\n",
				res.Version, res.Hash, plural(len(res.Counted), "valid signature"), res.Needed)
			return err
		},
	}
	bindNodeTarget(cmd.Flags(), &t, true)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	return cmd
}

// remoteText is the node's message without the sentinel's own text, which
// the caller words better.
func remoteText(err, sentinel error) string {
	return strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
}
