package dht

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// TestSeqGrowsAfterClockSetBack: a node whose clock was 5 minutes ahead
// (within MaxClockSkew: its record is stored) publishes, its clock is set
// back, and it restarts on another address. Its new record must still
// replace the old one: with Seq taken from the clock alone, the new Seq
// was below the old one, the storers kept the old record as the newer, and
// lookups returned the old addresses until it expired and its retention
// ran out (2 hours by default).
func TestSeqGrowsAfterClockSetBack(t *testing.T) {
	net := newNet(t, 3, nil)
	id := tu.NewIdentity(t)
	if err := net.list.Add(allowEntry(id.ID)); err != nil {
		t.Fatal(err)
	}
	boot := []peer.AddrInfo{net.members[0].info()}
	ahead := func() time.Time { return time.Now().Add(5 * time.Minute) }
	first := net.start(id, net.list, Config{Bootstrap: boot, NoPublish: true, Now: ahead})
	net.waitReady(first)
	net.publishAll(first)
	old, _ := first.dht.Published()
	first.dht.Close()
	first.node.Close()

	second := net.start(id, net.list, Config{Bootstrap: boot, NoPublish: true})
	net.waitReady(second)
	net.publishAll(second)
	rec, _ := second.dht.Published()
	if rec.Seq <= old.Seq {
		t.Fatalf("seq %d after a restart, the previous life's was %d", rec.Seq, old.Seq)
	}
	got, err := net.members[1].dht.Find(timeout(t), id.ID)
	if err != nil || got.Seq != rec.Seq || !sameAddrs(got.Addrs, second.node.Host().Addrs()) {
		t.Fatalf("found %+v, %v; want the new record %+v", got, err, rec)
	}
}
