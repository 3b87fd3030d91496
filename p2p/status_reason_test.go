package p2p_test

import (
	"errors"
	"testing"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// A Status's reason and its error tell the same story, and neither claims
// more than the node knows.

// A listed peer that this node's rate limiter has cut off is not dialed:
// the send is rejected, and its error says why. It used to carry only
// go-libp2p's "gater disallows connection to peer", under a reason that
// reads "not on the local allowlist, or refused us": the operator would
// look for an entry that is there, or blame the peer.
func TestSendToCutOffPeerSaysCutOff(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a, b := tu.Node(t, ia, list), tu.Node(t, ib, list)
	for i := 0; i < 1000 && !a.Limiter().PeerBanned(string(ib.ID)); i++ {
		a.Limiter().SpendPeer(string(ib.ID), ratelimit.ProtocolViolation)
	}
	if !a.Limiter().PeerBanned(string(ib.ID)) {
		t.Fatal("the peer is not cut off")
	}
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: b.Addrs()[0], ID: 1, Data: []byte("x")}
	st := nextOf(t, a, statusOf(1))
	if st.Reason != p2p.ReasonRejected || !errors.Is(st.Err, p2p.ErrPeerCutOff) {
		t.Fatalf("status %+v, want rejected: %v", st, p2p.ErrPeerCutOff)
	}
}
