package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

func newMembershipVerifyCmd(a *app) *cobra.Command {
	var (
		current string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "verify FILE [--current FILE]",
		Short: "Say whether a document may replace the current one, or why not",
		Long: `verify checks FILE against the current document: FILE must be the next
version, link to the current document's hash, not be expired, and carry
valid signatures by at least M members of the current version (M is the
current version's threshold). It lists the signatures that count and those
that do not, with the reason, and exits 0 only if FILE is valid. Without
--current, FILE is checked as a version 1 to install.`,
		Example: `  p2pnode membership verify membership-2.pb --current membership-1.pb
  p2pnode membership verify membership-1.pb
  p2pnode membership verify membership-2.pb --current membership-1.pb --json`,
		Args: checkArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			file := args[0]
			d, err := membership.ReadFile(file)
			if err != nil {
				return err
			}
			var (
				cur    *membership.Document
				report membership.Report
			)
			now := time.Now()
			if current == "" {
				report, err = membership.VerifyGenesis(d, now)
			} else {
				if cur, err = membership.ReadFile(current); err != nil {
					return err
				}
				report, err = membership.VerifyNext(cur, d, now)
			}
			if perr := printVerdict(a, asJSON, file, current, cur, d, report, err); perr != nil {
				return perr
			}
			if err != nil {
				return fmt.Errorf("%s is not valid: %w", file, errors.Unwrap(err))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&current, "current", "", "the current document `FILE` (default: check FILE as version 1)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the verdict as JSON")
	return cmd
}

// jsonRejection is a signature that does not count, as verify and combine
// print it.
type jsonRejection struct {
	File   string `json:"file,omitempty"`
	Index  int    `json:"index"`
	Signer string `json:"signer"`
	Reason string `json:"reason"`
}

// printVerdict prints what verify found; verr is the verification's error.
func printVerdict(a *app, asJSON bool, file, curFile string, cur, d *membership.Document, r membership.Report, verr error) error {
	counted := make([]string, 0, len(r.Counted))
	for _, id := range r.Counted {
		counted = append(counted, id.String())
	}
	rejected := make([]jsonRejection, 0, len(r.Rejected))
	for _, x := range r.Rejected {
		rejected = append(rejected, jsonRejection{Index: x.Index, Signer: x.Signer.String(), Reason: x.Err.Error()})
	}
	if asJSON {
		out := map[string]any{"file": file, "valid": verr == nil, "version": d.Version(), "hash": d.Hash().String(),
			"counted": counted, "rejected": rejected, "needed": r.Threshold}
		if cur != nil {
			out["current"] = map[string]any{"file": curFile, "version": cur.Version(), "hash": cur.Hash().String()}
		}
		if verr != nil {
			out["error"] = errors.Unwrap(verr).Error()
		}
		return encodeJSON(a.out, out)
	}
	// The signers that count first, by name where the current version
	// gives one: what an operator checks against the people who said they
	// signed.
	for _, id := range r.Counted {
		name := ""
		if cur != nil {
			if m, ok := cur.Body().Member(id); ok && m.Name != "" {
				name = " (" + m.Name + ")"
			}
		}
		fmt.Fprintf(a.out, "counts: %s%s\n", id, name)
	}
	for _, x := range rejected {
		fmt.Fprintf(a.out, "does not count: %s\n", x.Reason)
	}
	what := fmt.Sprintf("version %d (hash %s)", d.Version(), d.Hash())
	if cur == nil {
		what += " as version 1 to install"
	} else {
		what += fmt.Sprintf(" after version %d of %s", cur.Version(), curFile)
		// Signatures are checked last: a replayed or unlinked version was
		// refused before any was counted, and "0 valid" would mislead.
		if verr == nil || errors.Is(verr, membership.ErrThreshold) {
			what += fmt.Sprintf(": %s by its members, %d needed", plural(len(counted), "valid signature"), r.Threshold)
		}
	}
	verdict := "valid"
	if verr != nil {
		verdict = "NOT valid"
	}
	_, err := fmt.Fprintf(a.out, "%s: %s: %s\n", file, verdict, what)
	return err
}

func newMembershipShowCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Print a membership document: version, hash, members, signers",
		Long: `show prints everything a signature covers (version, previous hash,
threshold, expiry, members) and the document's hash, then who signed it.
A member's RELAY column says whether it is admitted over a circuit relay
although its addrs bind it to IPs ("-": it has no addrs, and is admitted
over a relay anyway).
Signatures are listed as the file holds them; "verify" checks them.`,
		Example: `  p2pnode membership show membership-2.pb
  p2pnode membership show membership-2.pb --json`,
		Args: checkArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			d, err := membership.ReadFile(args[0])
			if err != nil {
				return err
			}
			return printDocument(a, asJSON, args[0], d)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the document as JSON")
	return cmd
}

// jsonMember is a member as the membership commands print it.
type jsonMember struct {
	ID    string   `json:"id"`
	Name  string   `json:"name,omitempty"`
	Role  string   `json:"role,omitempty"`
	Addrs []string `json:"addrs"` // empty: any IP
	Relay bool     `json:"relay,omitempty"`
}

// jsonDocument is a document as the membership commands print it.
type jsonDocument struct {
	File       string       `json:"file"`
	Version    uint64       `json:"version"`
	Hash       string       `json:"hash"`
	Prev       string       `json:"prev,omitempty"` // none in version 1
	Threshold  int          `json:"threshold"`
	Expires    string       `json:"expires,omitempty"` // RFC 3339; none: never
	Members    []jsonMember `json:"members"`
	Signatures []string     `json:"signatures"` // signer peer IDs, as the file holds them
	Warning    string       `json:"warning,omitempty"`
}

func documentJSON(file string, d *membership.Document) jsonDocument {
	b := d.Body()
	j := jsonDocument{File: file, Version: b.Version, Hash: d.Hash().String(), Threshold: b.Threshold,
		Members: []jsonMember{}, Signatures: []string{}}
	if !b.Prev.IsZero() {
		j.Prev = b.Prev.String()
	}
	if !b.Expires.IsZero() {
		j.Expires = b.Expires.Format(time.RFC3339)
	}
	for _, m := range b.Members {
		jm := jsonMember{ID: m.ID.String(), Name: m.Name, Role: m.Role, Addrs: []string{}, Relay: m.Relay}
		for _, p := range m.Addrs {
			jm.Addrs = append(jm.Addrs, prefixText(p))
		}
		j.Members = append(j.Members, jm)
	}
	for _, s := range d.Signatures() {
		j.Signatures = append(j.Signatures, s.Signer.String())
	}
	if 2*b.Threshold <= len(b.Members) {
		// Two disjoint groups of M members could then each sign a different
		// next version, both valid: a fork nobody has to cheat to make.
		j.Warning = fmt.Sprintf("threshold %d is not a majority of %d members: two different next versions could both be valid", b.Threshold, len(b.Members))
	}
	return j
}

// printDocument prints d as show does.
func printDocument(a *app, asJSON bool, file string, d *membership.Document) error {
	j := documentJSON(file, d)
	if asJSON {
		return encodeJSON(a.out, j)
	}
	prev, expires := j.Prev, j.Expires
	if prev == "" {
		prev = "none (version 1)"
	}
	if expires == "" {
		expires = "never"
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "file:\t%s\n", file)
	fmt.Fprintf(tw, "version:\t%d\n", j.Version)
	fmt.Fprintf(tw, "hash:\t%s\n", j.Hash)
	fmt.Fprintf(tw, "previous:\t%s\n", prev)
	fmt.Fprintf(tw, "threshold:\t%d of %s must sign the next version\n", j.Threshold, plural(len(j.Members), "member"))
	fmt.Fprintf(tw, "expires:\t%s\n", expires)
	if j.Warning != "" {
		fmt.Fprintf(tw, "warning:\t%s\n", j.Warning)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nID\tNAME\tROLE\tADDRS\tRELAY")
	for _, m := range j.Members {
		addrs := "any"
		if len(m.Addrs) > 0 {
			addrs = strings.Join(m.Addrs, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, dash(m.Name), dash(m.Role), addrs, memberRelayText(m))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(a.out, "\n%s (checked by verify)\n", plural(len(j.Signatures), "signature")); err != nil {
		return err
	}
	for _, s := range j.Signatures {
		fmt.Fprintf(a.out, "  %s\n", s)
	}
	return nil
}

// memberRelayText says whether a member is admitted over a circuit relay, for
// show's RELAY column. A member without addrs is admitted there anyway, so
// its setting changes nothing and is not printed as a refusal.
func memberRelayText(m jsonMember) string {
	switch {
	case m.Relay:
		return "yes"
	case len(m.Addrs) == 0:
		return "-"
	}
	return "no"
}
