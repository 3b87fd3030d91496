package gossip_test

import (
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// A connection closed as soon as it opens (the exchange handler's
// automatic disconnection after a quick exchange) still carries its
// session: the service holds the connection (Config.Hold) until the
// session is over, so the member behind catches up on it.
func TestSessionSurvivesImmediateDisconnect(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	v1, err := membership.Genesis([]membership.Member{{ID: ia.ID}, {ID: ib.ID}}, 1, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	v2 := propose(t, v1, func(b *membership.Body) { b.Threshold = 2 }, ia)
	a, b := start(t, ia, v2, v1), start(t, ib, v1)
	connect(t, a, b) // a dials: its session starts in the connection's notification
	a.node.Sender() <- p2p.DisconnectFrom{Peer: ib.ID}
	waitApplied(t, b, 2)
	tu.NextMatch(t, a.node.Receiver(), func(d p2p.Disconnected) bool { return d.Peer == ib.ID })
}
