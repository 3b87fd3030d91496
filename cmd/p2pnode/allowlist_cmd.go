package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
)

// jsonEntry is an allowlist entry as the allowlist commands print it.
type jsonEntry struct {
	ID    string   `json:"id"`
	Name  string   `json:"name,omitempty"`
	Addrs []string `json:"addrs"` // empty: any IP
}

func entryJSON(e allowlist.Entry) jsonEntry {
	j := jsonEntry{ID: e.ID.String(), Name: e.Name, Addrs: []string{}}
	for _, p := range e.Addrs {
		j.Addrs = append(j.Addrs, prefixText(p))
	}
	return j
}

// prefixText writes a single-address prefix as the address, as the file does.
func prefixText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// newAllowlistCmd builds "allowlist" and its subcommands.
func newAllowlistCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "allowlist",
		Short: "Edit and check an allowlist file",
		Long: `The allowlist file says which peers may connect, and optionally from which IPs:

  peers:
    - id: 16Uiu2HAm...                 # peer ID, from p2pnode id
      name: operator-2                 # optional; shown beside the ID in events and logs
      addrs: [127.0.0.2, 10.1.0.0/16]  # optional; none means any IP
  allow_empty: false                   # optional; see below

Every ID must hold a valid public key: one whose key does not decode (most
mistyped characters) is refused, naming its line. A name must not hold
control or format characters (a newline, a bidi override).

add and remove rewrite the file atomically, sorted by peer ID, keeping its
mode; comments in it are not kept (an add that changes nothing leaves the
file alone and says unchanged). A FILE that is a symbolic link stays one:
the file it points to is rewritten (a link to nothing is an error). A running node picks the change up with "p2pnode allowlist
reload", on SIGHUP, or at once with run --watch. A reload to a file listing
no peers keeps the old list and reports an error, unless the file says
allow_empty: true (remove writes it when it removes the last peer).`,
		Example: `  p2pnode allowlist add allowlist.yaml --id 16Uiu2HAm... --name operator-2 --addr 10.0.0.2
  p2pnode allowlist list allowlist.yaml
  p2pnode allowlist check allowlist.yaml && p2pnode allowlist reload --data-dir /var/lib/p2pnode`,
	}
	asGroup(cmd)
	cmd.AddCommand(newAllowlistAddCmd(a), newAllowlistRemoveCmd(a), newAllowlistListCmd(a), newAllowlistCheckCmd(a),
		newAllowlistReloadCmd(a))
	return cmd
}

func newAllowlistAddCmd(a *app) *cobra.Command {
	var (
		id, name string
		addrs    []string
		asJSON   bool
		relay    bool
	)
	cmd := &cobra.Command{
		Use:   "add FILE --id PEER [--name NAME] [--addr IP|CIDR]... [--relay]",
		Short: "Add a peer to an allowlist file, or update its entry",
		Long: `add adds a peer to FILE (creating the file if it does not exist), or
replaces the name and addresses of a peer already listed. A peer already
listed with the same name, addresses and --relay is reported unchanged
(exit 0) and the file is not rewritten. --relay admits
the peer over a circuit relay although --addr binds it to IPs (a relayed
connection shows the relay's IP, not the peer's: docs/security.md §7).`,
		Example: `  p2pnode allowlist add allowlist.yaml --id 16Uiu2HAm... --name operator-2
  p2pnode allowlist add allowlist.yaml --id 16Uiu2HAm... --addr 10.0.0.2 --addr 10.1.0.0/16`,
		Args: checkArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			file := args[0]
			e, err := parseEntryFlags(id, name, addrs)
			if err != nil {
				return err
			}
			e.Relay = relay
			// An ID that decodes but holds no valid key, or a name that
			// holds a control character, is a bad flag too (exit 2),
			// found before the file is read or written.
			one, err := allowlist.New(e)
			if err != nil {
				return usageError{err}
			}
			list, err := loadOrEmpty(file)
			if err != nil {
				return err
			}
			action := "added"
			if old, ok := list.Get(e.ID); ok {
				// The file stays as it is, hand-written comments and all.
				if n, _ := one.Get(e.ID); sameEntry(old, n) {
					return printEdit(a, asJSON, "unchanged", file, e.ID, list.Len())
				}
				action = "updated"
			}
			if err := list.Add(e); err != nil {
				return err
			}
			if err := list.Save(file); err != nil {
				return err
			}
			return printEdit(a, asJSON, action, file, e.ID, list.Len())
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "`PEER` ID to allow (required)")
	cmd.Flags().StringVar(&name, "name", "", "operator `NAME`, for people and logs")
	cmd.Flags().StringArrayVar(&addrs, "addr", nil, "`IP|CIDR` the peer must connect from, repeatable (default any)")
	cmd.Flags().BoolVar(&relay, "relay", false, "admit the peer over a circuit relay despite --addr")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func newAllowlistRemoveCmd(a *app) *cobra.Command {
	var (
		id     string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:     "remove FILE --id PEER",
		Short:   "Remove a peer from an allowlist file",
		Example: `  p2pnode allowlist remove allowlist.yaml --id 16Uiu2HAm...`,
		Args:    checkArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			file := args[0]
			pid, err := parsePeerFlag(id)
			if err != nil {
				return err
			}
			list, err := allowlist.Load(file)
			if err != nil {
				return err
			}
			if !list.Remove(pid) {
				return fmt.Errorf("peer %s is not in %s", pid, file)
			}
			if err := list.Save(file); err != nil {
				return err
			}
			return printEdit(a, asJSON, "removed", file, pid, list.Len())
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "`PEER` ID to remove (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func newAllowlistListCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list FILE",
		Short: "List the peers of an allowlist file",
		Example: `  p2pnode allowlist list allowlist.yaml
  p2pnode allowlist list allowlist.yaml --json`,
		Args: checkArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			list, err := allowlist.Load(args[0])
			if err != nil {
				return err
			}
			entries := list.Entries()
			if asJSON {
				out := struct {
					File  string      `json:"file"`
					Peers []jsonEntry `json:"peers"`
				}{File: args[0], Peers: []jsonEntry{}}
				for _, e := range entries {
					out.Peers = append(out.Peers, entryJSON(e))
				}
				return json.NewEncoder(a.out).Encode(out)
			}
			if len(entries) == 0 {
				_, err := fmt.Fprintf(a.out, "%s: no peers (nobody may connect)\n", args[0])
				return err
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tADDRS")
			for _, e := range entries {
				j := entryJSON(e)
				addrs, name := "any", j.Name
				if len(j.Addrs) > 0 {
					addrs = strings.Join(j.Addrs, ",")
				}
				if name == "" {
					name = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", j.ID, name, addrs)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the peers as JSON")
	return cmd
}

func newAllowlistCheckCmd(a *app) *cobra.Command {
	var asJSON, routes bool
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "Check an allowlist (or routes) file and count its entries",
		Long: `check parses FILE as a node would and prints how many peers it holds and the
digest of its entries, the one "p2pnode status" shows for a node enforcing
them. A file with a problem fails with the file, line and problem on stderr,
and so does a file listing no peers, which a node's reload refuses, unless it
says allow_empty: true. With --routes, FILE is a routing table ("routes:"
rules) instead.`,
		Example: `  p2pnode allowlist check allowlist.yaml
  p2pnode allowlist check --routes routes.yaml --json`,
		Args: checkArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			file := args[0]
			if routes {
				r, err := allowlist.LoadRoutes(file)
				if err != nil {
					return err
				}
				n := len(r.Rules())
				if asJSON {
					return json.NewEncoder(a.out).Encode(map[string]any{"file": file, "ok": true, "routes": n})
				}
				_, err = fmt.Fprintf(a.out, "%s: ok, %s\n", file, plural(n, "route"))
				return err
			}
			l, err := allowlist.Check(file)
			if err != nil {
				// A routing table checked without --routes fails on its
				// "routes:" key, which says nothing of the flag.
				if _, rerr := allowlist.LoadRoutes(file); rerr == nil {
					return fmt.Errorf("%w (the file is a routing table: check it with --routes)", err)
				}
				return err
			}
			v := l.Version()
			if asJSON {
				return json.NewEncoder(a.out).Encode(map[string]any{"file": file, "ok": true, "peers": v.Len, "digest": v.Digest})
			}
			// The short digest, as status prints it.
			_, err = fmt.Fprintf(a.out, "%s: ok, %s, digest %s\n", file, plural(v.Len, "peer"), shortDigest(v.Digest))
			return err
		},
	}
	cmd.Flags().BoolVar(&routes, "routes", false, "FILE is a routes file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// parsePeerFlag decodes --id.
func parsePeerFlag(s string) (peer.ID, error) {
	if s == "" {
		return "", usageErrorf("give the peer with --id PEER")
	}
	id, err := peer.Decode(s)
	if err != nil {
		return "", usageErrorf("--id %q is not a peer ID", s)
	}
	return id, nil
}

// parseEntryFlags builds an entry from --id, --name and --addr. An address
// is an IP (that address only) or a CIDR prefix.
func parseEntryFlags(id, name string, addrs []string) (allowlist.Entry, error) {
	pid, err := parsePeerFlag(id)
	if err != nil {
		return allowlist.Entry{}, err
	}
	e := allowlist.Entry{ID: pid, Name: name}
	for _, s := range addrs {
		var p netip.Prefix
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var ip netip.Addr
			if ip, err = netip.ParseAddr(s); err == nil {
				p = netip.PrefixFrom(ip, ip.BitLen())
			}
		}
		if err != nil {
			return allowlist.Entry{}, usageErrorf("--addr %q is not an IP address or CIDR prefix", s)
		}
		e.Addrs = append(e.Addrs, p)
	}
	return e, nil
}

// loadOrEmpty loads an allowlist file, or starts an empty list when the
// file does not exist yet. Any other problem (a file that does not parse,
// a symbolic link to nothing) is an error: add must not replace a broken
// file with a one-peer list, nor put a file where a link was.
func loadOrEmpty(file string) (*allowlist.List, error) {
	l, err := allowlist.Load(file)
	if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, allowlist.ErrDanglingLink) {
		return &allowlist.List{}, nil
	}
	return l, err
}

// sameEntry reports whether two entries, as the list holds them, admit the
// same peer under the same name in the same way: the order of the
// addresses does not matter.
func sameEntry(a, b allowlist.Entry) bool {
	if a.ID != b.ID || a.Name != b.Name || a.Relay != b.Relay || len(a.Addrs) != len(b.Addrs) {
		return false
	}
	for _, p := range a.Addrs {
		if !slices.Contains(b.Addrs, p) {
			return false
		}
	}
	return true
}

// printEdit reports what add or remove did.
func printEdit(a *app, asJSON bool, action, file string, id peer.ID, count int) error {
	if asJSON {
		return json.NewEncoder(a.out).Encode(map[string]any{
			"action": action, "file": file, "peer": id.String(), "peers": count,
		})
	}
	if action == "unchanged" {
		_, err := fmt.Fprintf(a.out, "unchanged: %s is already in %s as given (%s)\n", id, file, plural(count, "peer"))
		return err
	}
	prep := map[string]string{"added": "to", "updated": "in", "removed": "from"}[action]
	_, err := fmt.Fprintf(a.out, "%s %s %s %s (%s)\n", action, id, prep, file, plural(count, "peer"))
	return err
}

// plural writes "1 peer", "2 peers"; "1 address", "2 addresses".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "s") {
		return fmt.Sprintf("%d %ses", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
