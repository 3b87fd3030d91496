package p2p

import (
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// PeerConns describes a connected peer's open connections.
type PeerConns struct {
	Peer peer.ID
	// Addrs are the remote addresses, one per connection.
	Addrs []ma.Multiaddr
	// Inbound and Outbound say which way its connections were opened;
	// both may be set.
	Inbound, Outbound bool
	// Direct and Relayed say whether its connections include direct ones
	// and ones through a circuit relay; both may be set (a hole punch
	// succeeded and the relayed connection has not closed yet). Streams
	// open on a direct connection when there is one.
	Direct, Relayed bool
	// Since is when the oldest open connection was opened.
	Since time.Time
}

// ConnectedPeers lists the peers with an open connection, as the host
// sees them at the moment of the call. It takes no lock of the node's.
func (n *Node) ConnectedPeers() []PeerConns {
	byPeer := make(map[peer.ID]*PeerConns)
	var order []peer.ID
	for _, c := range n.host.Network().Conns() {
		p := c.RemotePeer()
		pc := byPeer[p]
		if pc == nil {
			pc = &PeerConns{Peer: p}
			byPeer[p] = pc
			order = append(order, p)
		}
		st := c.Stat()
		pc.Addrs = append(pc.Addrs, c.RemoteMultiaddr())
		if isRelayed(c.RemoteMultiaddr()) {
			pc.Relayed = true
		} else {
			pc.Direct = true
		}
		if st.Direction == network.DirInbound {
			pc.Inbound = true
		} else {
			pc.Outbound = true
		}
		if pc.Since.IsZero() || (!st.Opened.IsZero() && st.Opened.Before(pc.Since)) {
			pc.Since = st.Opened
		}
	}
	out := make([]PeerConns, 0, len(order))
	for _, p := range order {
		out = append(out, *byPeer[p])
	}
	return out
}
