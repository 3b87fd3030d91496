package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// newAllowlistReloadCmd builds "allowlist reload".
func newAllowlistReloadCmd(a *app) *cobra.Command {
	var (
		t      nodeTarget
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make the running node read its allowlist and routes files again",
		Long: `reload asks the running node, through its control socket, to read its
allowlist (and routes) files again, as SIGHUP does, and prints the entries
and version now in force. A peer no longer listed is disconnected at once.
A file that does not parse fails the command (exit 1) and leaves the old
list in force; the node prints an error event too.

A node run with --membership has no allowlist file: its allowlist is the
members of its membership version, changed by p2pnode membership submit.
reload then reads its routes file alone and says that the allowlist was
not reloaded ("file" empty and "membership_version" with --json); without
--routes it has nothing to reload and fails (exit 1).

` + controlLong,
		Example: `  p2pnode allowlist add /etc/p2pnode/allowlist.yaml --id 16Uiu2HAm... --name operator-3
  p2pnode allowlist reload --config /etc/p2pnode/p2pnode.yaml`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			c, err := t.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			res, err := c.ReloadAllowlist(ctx)
			if err != nil {
				return fmt.Errorf("reload: %w", err)
			}
			if asJSON {
				j := struct {
					File       string `json:"file"`
					Entries    int32  `json:"entries"`
					Version    uint64 `json:"version"`
					RoutesFile string `json:"routes_file,omitempty"`
					Routes     int32  `json:"routes,omitempty"`
					// Set by a membership node: file is then empty, as no
					// allowlist file was read.
					MembershipVersion uint64 `json:"membership_version,omitempty"`
				}{res.File, res.Entries, res.Version, res.RoutesFile, res.Routes, res.MembershipVersion}
				return encodeJSON(a.out, j)
			}
			if res.MembershipVersion != 0 {
				_, err = fmt.Fprintf(a.out, "allowlist not reloaded: it is the members of membership version %d (%d entries, revision %d); "+
					"change them with p2pnode membership submit\n", res.MembershipVersion, res.Entries, res.Version)
			} else {
				_, err = fmt.Fprintf(a.out, "reloaded %s: %d entries, revision %d\n", res.File, res.Entries, res.Version)
			}
			if err != nil {
				return err
			}
			if res.RoutesFile != "" {
				_, err = fmt.Fprintf(a.out, "reloaded %s: %d routes\n", res.RoutesFile, res.Routes)
			}
			return err
		},
	}
	bindNodeTarget(cmd.Flags(), &t, true)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	return cmd
}
