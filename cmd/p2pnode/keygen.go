package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// keyInfo is what keygen and id print with --json. The key itself is never
// printed.
type keyInfo struct {
	Peer       string `json:"peer"`
	Type       string `json:"type"`
	PubKeyHash string `json:"pubkey_hash"`
	File       string `json:"file"`
}

// newKeygenCmd builds "keygen".
func newKeygenCmd(a *app) *cobra.Command {
	var (
		out     string
		keyType string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Create an identity key file and print its peer ID",
		Long: `keygen creates a new identity key, writes it to FILE with mode 0600, and
prints the peer ID that other operators put in their allowlists. It never
overwrites an existing file: a lost identity key cannot be recovered.`,
		Example: `  p2pnode keygen --out node.key
  p2pnode keygen --out node.key --type ed25519 --json`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if out == "" {
				return usageErrorf("keygen needs --out FILE")
			}
			t := p2p.KeyType(keyType)
			if t != p2p.Secp256k1 && t != p2p.Ed25519 {
				return usageErrorf("--type %q: want secp256k1 or ed25519", keyType)
			}
			k, err := p2p.GenerateKey(t)
			if err != nil {
				return err
			}
			if err := p2p.SaveKey(out, k); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("%s already exists; not overwriting an identity key", out)
				}
				// The key is written under a temporary name beside out:
				// its error would name that file, not the missing directory.
				if dir := filepath.Dir(out); errors.Is(err, fs.ErrNotExist) && !dirExists(dir) {
					return fmt.Errorf("cannot write %s: directory %s does not exist (create it first)", out, dir)
				}
				return err
			}
			id, err := peer.IDFromPrivateKey(k)
			if err != nil {
				return err
			}
			info := keyInfo{Peer: id.String(), Type: string(t), File: out}
			if info.PubKeyHash, err = p2p.PubKeyHash(k.GetPublic()); err != nil {
				return err
			}
			return printKeyInfo(a, info, asJSON)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "`FILE` to write the new key to (must not exist)")
	cmd.Flags().StringVar(&keyType, "type", string(p2p.Secp256k1), "key `TYPE`: secp256k1 or ed25519")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print peer ID, key type and public key hash as JSON")
	return cmd
}

// printKeyInfo prints the peer ID alone (easy to capture in a script), or
// everything as JSON.
func printKeyInfo(a *app, info keyInfo, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(a.out).Encode(info)
	}
	_, err := fmt.Fprintln(a.out, info.Peer)
	return err
}

// dirExists reports whether path is a directory.
func dirExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
