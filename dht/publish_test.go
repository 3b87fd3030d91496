package dht

import (
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestMissed(t *testing.T) {
	ids := func(s ...string) []peer.ID {
		out := make([]peer.ID, len(s))
		for i, x := range s {
			out[i] = peer.ID(x)
		}
		slices.Sort(out)
		return out
	}
	cases := []struct {
		nearest, published []peer.ID
		want               bool
	}{
		{ids(), ids(), false},
		{ids("a"), ids(), true},
		{ids("a", "b"), ids("a"), true},
		{ids("a", "b", "c", "d", "e", "f", "g", "h"), ids("a", "b", "c", "d", "e", "f", "g"), false},
		{ids("a", "b", "c", "d", "e", "f", "g", "h"), ids("a", "b", "c", "d", "e", "f"), true},
		{ids("a", "b"), ids("a", "b", "c"), false},
	}
	for i, c := range cases {
		if got := missed(c.nearest, c.published); got != c.want {
			t.Errorf("case %d: missed(%v, %v) = %v", i, c.nearest, c.published, got)
		}
	}
}
