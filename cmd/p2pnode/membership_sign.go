package main

// membership sign and combine: the steps between a proposal and a version
// the nodes accept.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

func newMembershipSignCmd(a *app) *cobra.Command {
	var (
		keyFile string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "sign FILE --key KEY",
		Short: "Sign a proposal with one operator's identity key (offline)",
		Long: `sign adds the signature of the identity key in --key to the proposal FILE and
rewrites FILE atomically. Review the proposal with "show" first and compare
its hash with the proposer's over another channel: the signature covers
exactly the version, threshold, expiry, previous hash and members shown
there. A signature in FILE that names the key but does not verify with it
is removed, and replaced by a new one unless FILE also holds a valid
signature by the key: then FILE is rewritten without the bad ones and
nothing is added. A key that already signed FILE, with no bad signature
to remove, is refused. Whether the signer is a member of the current
version is checked by "verify".`,
		Example: `  p2pnode membership show membership-2.pb
  p2pnode membership sign membership-2.pb --key node.key`,
		Args: checkArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			file := args[0]
			k, err := loadKey(keyFile)
			if err != nil {
				return err
			}
			d, err := membership.ReadFile(file)
			if err != nil {
				return err
			}
			d, removed, err := dropForgedOwn(d, k)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			id, _ := peer.IDFromPrivateKey(k)
			// A valid signature by the key left after the bad ones went:
			// the copy is signed already, and what it needs is to lose
			// the bad ones, which Sign alone would refuse to write.
			added := removed == 0 || !d.SignedBy(id)
			if added {
				if err := d.Sign(k); err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
			}
			if err := membership.WriteFile(file, d); err != nil {
				return err
			}
			if asJSON {
				return encodeJSON(a.out, map[string]any{"file": file, "signer": id.String(), "version": d.Version(),
					"hash": d.Hash().String(), "signatures": len(d.Signatures()), "added": added, "removed": removed})
			}
			if removed > 0 {
				fmt.Fprintf(a.out, "removed %s by %s that did not verify from %s\n",
					plural(removed, "signature"), id, file)
			}
			if !added {
				_, err = fmt.Fprintf(a.out, "version %d (hash %s) of %s already holds a valid signature by %s: %s\n",
					d.Version(), d.Hash(), file, id, plural(len(d.Signatures()), "signature"))
				return err
			}
			_, err = fmt.Fprintf(a.out, "signed version %d (hash %s) of %s as %s: %s\n",
				d.Version(), d.Hash(), file, id, plural(len(d.Signatures()), "signature"))
			return err
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "identity key `FILE` to sign with")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func newMembershipCombineCmd(a *app) *cobra.Command {
	var (
		out    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "combine --out FILE COPY...",
		Short: "Merge the signatures of signed copies of one proposal",
		Long: `combine merges the signatures of copies of the same proposal into --out (which
may be one of the copies; an --out holding another signed copy of the
proposal is merged too, and one holding anything else is not replaced).
Copies of different proposals are refused. A
signature that does not verify with its signer's key is dropped and
reported; the rest are kept, one per signer.`,
		Example: `  p2pnode membership combine --out membership-2.pb alice/membership-2.pb bob/membership-2.pb carol/membership-2.pb`,
		Args:    checkArgs(cobra.MinimumNArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			if out == "" {
				return usageErrorf("combine needs --out FILE")
			}
			docs := make([]*membership.Document, len(args))
			for i, f := range args {
				d, err := membership.ReadFile(f)
				if err != nil {
					return err
				}
				if i > 0 && d.Hash() != docs[0].Hash() {
					return fmt.Errorf("%s holds a different proposal than %s (version %d, hash %s; version %d, hash %s)",
						f, args[0], d.Version(), d.Hash(), docs[0].Version(), docs[0].Hash())
				}
				docs[i] = d
			}
			// An --out that is not one of the copies is merged too if it
			// holds the same proposal (its signatures are not lost), and
			// never replaced if it holds anything else.
			files := args
			if d, err := existingOut(out, args, docs[0]); err != nil {
				return err
			} else if d != nil {
				docs, files = append(docs, d), append(slices.Clip(args), out)
			}
			merged, rejected, err := membership.Combine(docs...)
			if err != nil {
				return err
			}
			if err := membership.WriteFile(out, merged); err != nil {
				return err
			}
			dropped := make([]jsonRejection, 0, len(rejected))
			for _, r := range rejected {
				dropped = append(dropped, jsonRejection{File: files[r.Copy], Index: r.Index, Signer: r.Signer.String(), Reason: r.Err.Error()})
			}
			if asJSON {
				return encodeJSON(a.out, map[string]any{"file": out, "version": merged.Version(), "hash": merged.Hash().String(),
					"signatures": len(merged.Signatures()), "dropped": dropped})
			}
			for _, r := range dropped {
				fmt.Fprintf(a.out, "dropped signature %d of %s: %s\n", r.Index, r.File, r.Reason)
			}
			_, err = fmt.Fprintf(a.out, "combined %d copies into %s: version %d (hash %s), %s\n",
				len(args), out, merged.Version(), merged.Hash(), plural(len(merged.Signatures()), "signature"))
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "`FILE` to write the combined proposal to")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// existingOut checks combine's --out before it is replaced: nothing there,
// or one of the copies, is fine (nil); a file holding another signed copy
// of the proposal is returned, to be merged; anything else is an error.
func existingOut(out string, copies []string, proposal *membership.Document) (*membership.Document, error) {
	fi, err := os.Stat(out)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	for _, c := range copies {
		if ci, err := os.Stat(c); err == nil && os.SameFile(fi, ci) {
			return nil, nil
		}
	}
	d, err := membership.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("%s exists and is not one of the copies; not overwriting it: %w", out, err)
	}
	if d.Hash() != proposal.Hash() {
		return nil, fmt.Errorf("%s holds another document (version %d, hash %s) than the copies (version %d, hash %s); not overwriting it",
			out, d.Version(), d.Hash(), proposal.Version(), proposal.Hash())
	}
	return d, nil
}

// dropForgedOwn returns d without the signatures that name k's peer ID but
// do not verify with k, and how many it dropped: a copy carrying one (a
// corrupt copy, or a proposer who put it there) is not signed by k, and
// Sign would refuse it as "already signed". A valid signature by k is kept.
func dropForgedOwn(d *membership.Document, k crypto.PrivKey) (*membership.Document, int, error) {
	id, err := peer.IDFromPrivateKey(k)
	if err != nil || !d.SignedBy(id) {
		return d, 0, nil // Sign reports a bad key
	}
	sigs := d.Signatures()
	forged := func(s membership.Signature) bool {
		ok, err := k.GetPublic().Verify(d.SignedBytes(), s.Sig)
		return s.Signer == id && (err != nil || !ok)
	}
	if !slices.ContainsFunc(sigs, forged) {
		return d, 0, nil
	}
	out, err := membership.NewDocument(d.Body())
	if err != nil {
		return nil, 0, err
	}
	if out.Hash() != d.Hash() {
		return nil, 0, fmt.Errorf("membership: the body does not encode back to the same bytes") // cannot happen: decoded bodies are canonical
	}
	removed := 0
	for _, s := range sigs {
		if forged(s) {
			removed++
			continue
		}
		if err := out.AddSignature(s); err != nil {
			return nil, 0, err
		}
	}
	return out, removed, nil
}
