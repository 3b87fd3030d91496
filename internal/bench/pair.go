package bench

import (
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// pairConfigs makes two fresh identities of type t and node configurations
// that allowlist each other: the start of every two-node workload.
func pairConfigs(t p2p.KeyType) (a, b p2p.Config, err error) {
	var ids [2]peer.ID
	var keys [2]p2p.Config
	for i := range keys {
		if keys[i].Key, err = p2p.GenerateKey(t); err != nil {
			return a, b, err
		}
		ids[i], _ = peer.IDFromPrivateKey(keys[i].Key)
	}
	list, err := allowlist.New(allowlist.Entry{ID: ids[0]}, allowlist.Entry{ID: ids[1]})
	if err != nil {
		return a, b, err
	}
	keys[0].Allowlist, keys[1].Allowlist = list, list
	return keys[0], keys[1], nil
}
