package dht

import (
	"errors"
	"testing"
)

func TestNoPublishJoinsWithoutARecord(t *testing.T) {
	net := newNet(t, 3, func(i int, c *Config) { c.NoPublish = i == 2 })
	net.publishAll(net.members[:2]...)
	tool := net.members[2]
	ctx := timeout(t)
	// The tool can look others up...
	if r, err := tool.dht.Find(ctx, net.members[1].node.ID()); err != nil || len(r.Addrs) == 0 {
		t.Fatalf("tool's lookup: %+v, %v", r, err)
	}
	// ...but has published nothing for its key.
	if _, ok := tool.dht.Published(); ok {
		t.Fatal("a NoPublish node published its record")
	}
	if _, err := net.members[0].dht.Find(ctx, tool.node.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("found the tool's record: %v", err)
	}
}
