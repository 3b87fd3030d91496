package dht

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// RecordTTL is a per-node setting (p2pnode run --record-ttl): a record's
// validity is its publisher's, so the nodes storing it must keep it that
// long, not for their own RecordTTL + ExpiredRetention (kad.MaxRecordAge),
// or a node with a longer TTL than theirs vanishes from the DHT between
// its publications while its signed record is still valid. Here the
// storers' own settings would keep records for 2s, the publisher's record
// lasts an hour, and the publisher is stopped so that only the storers can
// answer.
func TestRecordOutlivesStorersOwnTTL(t *testing.T) {
	net := newNet(t, 3, func(_ int, c *Config) { c.RecordTTL, c.Refresh = time.Second, 900*time.Millisecond })
	id := tu.NewIdentity(t)
	if err := net.list.Add(allowEntry(id.ID)); err != nil {
		t.Fatal(err)
	}
	pub := net.start(id, net.list, Config{Bootstrap: []peer.AddrInfo{net.members[0].info()}, NoPublish: true})
	net.waitReady(pub)
	net.publishAll(pub)
	published := time.Now()
	r := net.members[1].dht
	if _, err := r.Find(timeout(t), id.ID); err != nil {
		t.Fatalf("find right after publishing: %v", err)
	}
	pub.dht.Close()
	pub.node.Close()
	// A sleep is the only way here: kad-dht stamps a stored record with
	// the wall clock (time.Now) when it receives it and offers no clock
	// to inject nor event when it drops a record, so the storers' limit
	// can only be passed by letting 2.5 s of real time pass.
	time.Sleep(time.Until(published.Add(2*time.Second + 500*time.Millisecond)))
	if _, err := r.Find(timeout(t), id.ID); err != nil {
		t.Fatalf("a record valid for %s is gone after %s: %v",
			DefaultRecordTTL, time.Since(published).Round(time.Millisecond), err)
	}
}
