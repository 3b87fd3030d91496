package main

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// newIDCmd builds "id".
func newIDCmd(a *app) *cobra.Command {
	var (
		keyFile string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "id --key FILE",
		Short: "Print the peer ID of an identity key file",
		Long: `id prints the peer ID of an identity key file, as written by keygen (or
holding the key in hex). With --json it also prints the key type and the
public key hash the BitVMX broker libraries identify peers by.`,
		Example: `  p2pnode id --key node.key
  p2pnode id --key node.key --json`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			k, err := loadKey(keyFile)
			if err != nil {
				return err
			}
			id, err := peer.IDFromPrivateKey(k)
			if err != nil {
				return err
			}
			info := keyInfo{Peer: id.String(), Type: keyTypeName(k), File: keyFile}
			if info.PubKeyHash, err = p2p.PubKeyHash(k.GetPublic()); err != nil {
				return err
			}
			return printKeyInfo(a, info, asJSON)
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "identity key `FILE`")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print peer ID, key type and public key hash as JSON")
	return cmd
}

// loadKey loads an identity key file for id and run, with a hint for the
// most common mistake, a key file others can read.
func loadKey(path string) (crypto.PrivKey, error) {
	if path == "" {
		return nil, usageErrorf("no identity key: give --key FILE")
	}
	k, err := p2p.LoadKey(path)
	switch {
	case errors.Is(err, p2p.ErrKeyPermissions):
		return nil, fmt.Errorf("%w; fix with: chmod 600 %s", err, path)
	case errors.Is(err, p2p.ErrNotKeyFile):
		return nil, fmt.Errorf("%w; --key takes the file p2pnode keygen --out wrote", err)
	}
	return k, err
}

// keyTypeName names a key's algorithm as --type does.
func keyTypeName(k crypto.PrivKey) string {
	switch k.Type() {
	case crypto.Secp256k1:
		return string(p2p.Secp256k1)
	case crypto.Ed25519:
		return string(p2p.Ed25519)
	}
	return k.Type().String()
}
