package bench

import (
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// pairConfigs makes two fresh identities of type t and node configurations
// that allowlist each other: the start of every two-node workload.
func pairConfigs(t p2p.KeyType) (a, b p2p.Config, err error) {
	cs, err := groupConfigs(t, 2)
	if err != nil {
		return a, b, err
	}
	return cs[0], cs[1], nil
}

// groupConfigs makes n fresh identities of type t and node configurations
// that all allowlist one another.
func groupConfigs(t p2p.KeyType, n int) ([]p2p.Config, error) {
	entries := make([]allowlist.Entry, n)
	cs := make([]p2p.Config, n)
	for i := range cs {
		k, err := p2p.GenerateKey(t)
		if err != nil {
			return nil, err
		}
		cs[i].Key = k
		if entries[i].ID, err = peer.IDFromPrivateKey(k); err != nil {
			return nil, err
		}
	}
	list, err := allowlist.New(entries...)
	if err != nil {
		return nil, err
	}
	for i := range cs {
		cs[i].Allowlist = list
	}
	return cs, nil
}
