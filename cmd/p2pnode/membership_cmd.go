package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// newMembershipCmd builds "membership" and its subcommands: the offline
// tools of membership by consensus (docs/membership.md).
func newMembershipCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "membership",
		Short: "Create, propose, sign and verify membership documents (allowlists changed by M of N operators)",
		Long: `A membership document is an allowlist as a versioned, signed object: its
members, a threshold M, a version number and the hash of the version before
it. Version 1 is trusted because you install it; every later version is
valid only if at least M members of the version before it signed it.

The flow: one operator runs "propose" on the current document and sends the
proposal file to the others; each reviews it with "show", compares its hash
with the proposer's over another channel, and runs "sign" with their own key;
"combine" merges the signed copies; "verify" says whether the result may
replace the current document; "export" writes a valid one's members as an
allowlist YAML file. These work on files, offline.

"submit" hands a valid next version to a node running with --membership,
which applies it and spreads it to the other members' nodes.`,
		Example: `  p2pnode membership init --allowlist allowlist.yaml --threshold 2 --out membership-1.pb
  p2pnode membership propose --current membership-1.pb --add 16Uiu2HAm...,operator-4 --out membership-2.pb
  p2pnode membership sign membership-2.pb --key node.key
  p2pnode membership combine --out membership-2.pb alice/membership-2.pb bob/membership-2.pb
  p2pnode membership verify membership-2.pb --current membership-1.pb
  p2pnode membership show membership-2.pb --json
  p2pnode membership export membership-2.pb --current membership-1.pb --out allowlist.yaml
  p2pnode membership submit membership-2.pb --data-dir /var/lib/p2pnode`,
	}
	asGroup(cmd)
	cmd.AddCommand(newMembershipInitCmd(a), newMembershipProposeCmd(a), newMembershipSignCmd(a),
		newMembershipCombineCmd(a), newMembershipVerifyCmd(a), newMembershipShowCmd(a), newMembershipExportCmd(a), newMembershipSubmitCmd(a))
	return cmd
}

func newMembershipInitCmd(a *app) *cobra.Command {
	var (
		listFile, out, expires string
		threshold              int
		asJSON                 bool
	)
	cmd := &cobra.Command{
		Use:   "init --allowlist FILE --threshold M --out FILE",
		Short: "Create version 1 (genesis) from an allowlist file",
		Long: `init turns the peers of an allowlist YAML file into version 1 of a membership
document, with threshold M: at least M of these members must sign version 2.
Every operator installs the same version 1 (compare its hash). Each member
keeps its entry's name, addrs and relay setting. The member identities must
be secp256k1 or ed25519 keys. init never overwrites a file.`,
		Example: `  p2pnode membership init --allowlist allowlist.yaml --threshold 2 --out membership-1.pb
  p2pnode membership init --allowlist allowlist.yaml --threshold 3 --expires 8760h --out membership-1.pb`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listFile == "" || out == "" || !cmd.Flags().Changed("threshold") {
				return usageErrorf("init needs --allowlist FILE, --threshold M and --out FILE")
			}
			exp, err := parseExpiry(expires, time.Time{})
			if err != nil {
				return err
			}
			list, err := allowlist.Load(listFile)
			if err != nil {
				return err
			}
			// Checked here, not left to Genesis: a threshold out of range
			// is a mistake in the command line (exit 2), which only the
			// allowlist's size can tell.
			if n := list.Len(); n == 0 {
				return fmt.Errorf("%s has no peers: a document needs members", listFile)
			} else if threshold < 1 || threshold > n {
				return usageErrorf("--threshold %d is out of range: 1..%d (the peers of %s)", threshold, n, listFile)
			}
			d, err := membership.Genesis(membership.MembersFromAllowlist(list.Entries()), threshold, exp)
			if err != nil {
				return fmt.Errorf("%s: %w", listFile, err)
			}
			if err := writeNewDocument(out, d); err != nil {
				return err
			}
			return printDocument(a, asJSON, out, d)
		},
	}
	cmd.Flags().StringVar(&listFile, "allowlist", "", "allowlist YAML `FILE` holding the members")
	cmd.Flags().IntVar(&threshold, "threshold", 0, "`M`: members of this version who must sign the next one")
	cmd.Flags().StringVar(&expires, "expires", "", "expiry, as a duration from now (8760h) or an RFC 3339 `TIME` (default never)")
	cmd.Flags().StringVar(&out, "out", "", "`FILE` to write version 1 to (must not exist)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the document as JSON")
	return cmd
}

func newMembershipProposeCmd(a *app) *cobra.Command {
	var (
		current, out, expires string
		adds, removes, edits  []string
		threshold             int
		asJSON                bool
	)
	cmd := &cobra.Command{
		Use:   "propose --current FILE --out FILE [--add ID[,NAME]]... [--remove ID]... [--edit ID:FIELD=VALUE]... [--threshold M]",
		Short: "Write an unsigned proposal for the version after the current one",
		Long: `propose reads the current document and writes the next version, unsigned, to
--out: the same members, threshold and expiry, changed by the flags. --edit
sets one field of a member: name, role, addrs (comma-separated IPs and
CIDR prefixes; empty means any IP), or relay (true admits the member over a
circuit relay although addrs binds it to IPs, as "relay: true" does in an
allowlist file; false refuses an IP-bound member there). Edits apply after additions, so a new
member can be given addresses in the same command. Removing members can
leave the threshold above the number of members: then give --threshold.
The signatures this proposal needs are M members of the CURRENT version.`,
		Example: `  p2pnode membership propose --current membership-1.pb --out membership-2.pb --add 16Uiu2HAm...,operator-4
  p2pnode membership propose --current membership-2.pb --out membership-3.pb --remove 16Uiu2HAm... --threshold 2
  p2pnode membership propose --current membership-3.pb --out membership-4.pb --edit '16Uiu2HAm...:addrs=10.0.0.2,10.1.0.0/16'
  p2pnode membership propose --current membership-4.pb --out membership-5.pb --edit 16Uiu2HAm...:relay=true`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if current == "" || out == "" {
				return usageErrorf("propose needs --current FILE and --out FILE")
			}
			cur, err := membership.ReadFile(current)
			if err != nil {
				return err
			}
			b := cur.Next()
			if err := applyChanges(&b, adds, removes, edits); err != nil {
				return err
			}
			if cmd.Flags().Changed("threshold") {
				b.Threshold = threshold
			}
			if cmd.Flags().Changed("expires") {
				if b.Expires, err = parseExpiry(expires, time.Time{}); err != nil {
					return err
				}
			}
			switch n := len(b.Members); {
			case n == 0:
				return usageErrorf("the proposal removes every member: a document needs members")
			case cmd.Flags().Changed("threshold") && (threshold < 1 || threshold > n):
				return usageErrorf("--threshold %d is out of range: 1..%d (the %s of the proposal)", threshold, n, plural(n, "member"))
			case b.Threshold > n:
				return usageErrorf("the current threshold %d is more than the %s left: give --threshold", b.Threshold, plural(n, "member"))
			}
			d, err := membership.NewDocument(b)
			if err != nil {
				return err
			}
			if sameContent(cur, d) {
				return usageErrorf("the proposal changes nothing in %s", current)
			}
			if err := writeNewDocument(out, d); err != nil {
				return err
			}
			return printDocument(a, asJSON, out, d)
		},
	}
	cmd.Flags().StringVar(&current, "current", "", "the current document `FILE`")
	cmd.Flags().StringVar(&out, "out", "", "`FILE` to write the proposal to (must not exist)")
	cmd.Flags().StringArrayVar(&adds, "add", nil, "add a member: `ID[,NAME]`, repeatable")
	cmd.Flags().StringArrayVar(&removes, "remove", nil, "remove the member with peer `ID`, repeatable")
	cmd.Flags().StringArrayVar(&edits, "edit", nil, "set a member's field: `ID:FIELD=VALUE` with FIELD name, role, addrs or relay; repeatable")
	cmd.Flags().IntVar(&threshold, "threshold", 0, "new threshold `M` (default unchanged)")
	cmd.Flags().StringVar(&expires, "expires", "", "new expiry: a duration from now, an RFC 3339 `TIME`, or \"never\" (default unchanged)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the proposal as JSON")
	return cmd
}

// applyChanges applies propose's --add, --remove and --edit to b, in that
// order; every mistake is a usage error naming the flag.
func applyChanges(b *membership.Body, adds, removes, edits []string) error {
	idx := func(id peer.ID) int {
		return slices.IndexFunc(b.Members, func(m membership.Member) bool { return m.ID == id })
	}
	for _, s := range adds {
		idText, name, _ := strings.Cut(s, ",")
		id, err := peer.Decode(idText)
		if err != nil {
			return usageErrorf("--add %q: %q is not a peer ID", s, idText)
		}
		if idx(id) >= 0 {
			return usageErrorf("--add %s: already a member", id)
		}
		b.Members = append(b.Members, membership.Member{ID: id, Name: name})
	}
	for _, s := range removes {
		id, err := peer.Decode(s)
		if err != nil {
			return usageErrorf("--remove %q is not a peer ID", s)
		}
		i := idx(id)
		if i < 0 {
			return usageErrorf("--remove %s: not a member", id)
		}
		b.Members = slices.Delete(b.Members, i, i+1)
	}
	for _, s := range edits {
		idText, kv, ok := strings.Cut(s, ":")
		field, value, ok2 := strings.Cut(kv, "=")
		if !ok || !ok2 {
			return usageErrorf("--edit %q: want ID:FIELD=VALUE", s)
		}
		id, err := peer.Decode(idText)
		if err != nil {
			return usageErrorf("--edit %q: %q is not a peer ID", s, idText)
		}
		i := idx(id)
		if i < 0 {
			return usageErrorf("--edit %s: not a member", id)
		}
		switch field {
		case "name":
			b.Members[i].Name = value
		case "role":
			b.Members[i].Role = value
		case "addrs":
			addrs, err := parseAddrList(value)
			if err != nil {
				return usageErrorf("--edit %q: %w", s, err)
			}
			b.Members[i].Addrs = addrs
		case "relay":
			// The spelling an allowlist file takes for the same setting.
			switch value {
			case "true":
				b.Members[i].Relay = true
			case "false":
				b.Members[i].Relay = false
			default:
				return usageErrorf("--edit %q: relay must be true or false", s)
			}
		default:
			return usageErrorf("--edit %q: unknown field %q (want name, role, addrs or relay)", s, field)
		}
	}
	return nil
}

// parseAddrList reads comma-separated IPs and CIDR prefixes; empty is none.
func parseAddrList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR prefix", f)
			}
			out = append(out, p)
			continue
		}
		ip, err := netip.ParseAddr(f)
		if err != nil || ip.Zone() != "" {
			return nil, fmt.Errorf("%q is not an IP address or CIDR prefix", f)
		}
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}

// sameContent reports whether next holds the same membership as cur:
// members, threshold and expiry.
func sameContent(cur, next *membership.Document) bool {
	a, b := cur.Body(), next.Body()
	return a.Threshold == b.Threshold && a.Expires.Equal(b.Expires) &&
		slices.EqualFunc(a.Members, b.Members, func(x, y membership.Member) bool {
			return x.ID == y.ID && x.Name == y.Name && x.Role == y.Role && x.Relay == y.Relay && slices.Equal(x.Addrs, y.Addrs)
		})
}

// parseExpiry reads --expires: empty gives def, "never" no expiry, a Go
// duration that long from now, else an RFC 3339 time, which must be in the
// future: a version that has expired already is refused by every node.
func parseExpiry(s string, def time.Time) (time.Time, error) {
	switch s {
	case "":
		return def, nil
	case "never":
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		// Documents keep whole seconds: under a second from now would be
		// stored as the current second, already past.
		if d < time.Second {
			return time.Time{}, usageErrorf("--expires %q: a duration must be at least 1s", s)
		}
		return time.Now().Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usageErrorf("--expires %q: want a duration (8760h), an RFC 3339 time or never", s)
	}
	// Documents keep whole seconds: a time within the current second
	// would be stored as already past.
	if t.Unix() <= time.Now().Unix() {
		return time.Time{}, usageErrorf("--expires %q is not in the future", s)
	}
	return t, nil
}

// writeNewDocument writes d to path, which must not exist: init and propose
// never replace a document someone may already be signing.
func writeNewDocument(path string, d *membership.Document) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s already exists; not overwriting it", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return membership.WriteFile(path, d)
}
