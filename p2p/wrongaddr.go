package p2p

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"
)

// Wrong addresses.
//
// An address is only a hint: Noise proves the key at the far end, so a
// dial to peer A at an address where some other node W listens fails with
// a peer ID mismatch and cannot impersonate anyone. But each such dial
// still reaches W, which spends a signature and a Diffie-Hellman on a
// handshake the dialer then declines, and charges this node's IP for it
// (ratelimit.DeclinedHandshake). A hostile member can provoke that at will:
// it advertises W's address as its own (in identify or in its DHT record),
// sends this node requests and hangs up, and every reply is dialed back to
// W. So an address that proved another key is not dialed for that peer
// again for wrongAddrTTL: the gater refuses the dial (InterceptAddrDial),
// whatever re-adds the address (a fresh identify, a DHT record, the
// handler's redials), and it is dropped from the peerstore. At most one
// dial per address and wrongAddrTTL then reaches W on A's word.
//
// Nobody is charged for it: addresses go stale honestly (a peer moved, and
// another member took its old address), and the dialer cannot tell that
// from a lie. The dial is logged and counted instead
// (bitvmx_p2p_wrong_address_dials_total).

const (
	// wrongAddrTTL is how long an address that proved another key is not
	// dialed for the peer that was expected there. Long enough that a
	// peer advertising someone else's address gets this node to knock
	// there a handful of times an hour at most; short enough that a
	// member who really does move to an address another member left is
	// reachable there again soon (it is reachable at its other addresses
	// meanwhile).
	wrongAddrTTL = 10 * time.Minute
)

// wrongAddr is told that a dial to expected at a proved actual's key:
// a is not dialed for expected for a while, and leaves its addresses.
func (n *Node) wrongAddr(expected, actual peer.ID, a ma.Multiaddr) {
	n.wrong.add(expected, a)
	n.metrics.wrongAddrDial()
	n.log.Info("address holds another peer's key: not dialing it for this peer for a while",
		zap.Stringer("peer", expected), zap.String("peer_name", n.refusals.name(expected)),
		zap.Stringer("addr", a), zap.Stringer("found", actual), zap.String("found_name", n.refusals.name(actual)),
		zap.Duration("for", n.wrong.ttl))
	if n.started.Load() {
		n.host.Peerstore().SetAddr(expected, a, 0)
	}
}
