package bench

import (
	"testing"

	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// The bare hosts' limits let one host make MaxIdleConns connections, all
// at once: go-libp2p's defaults, scaled to a small machine, stopped a
// baseline at about 500 (bench memory --conns 512 failed with "cannot
// reserve outbound connection").
func TestBareLimitsMakeRoomForMaxIdleConns(t *testing.T) {
	limits := bareLimits().ToPartialLimitConfig()
	for name, l := range map[string]rcmgr.ResourceLimits{"system": limits.System, "transient": limits.Transient} {
		for what, v := range map[string]rcmgr.LimitVal{"conns": l.Conns, "inbound": l.ConnsInbound, "outbound": l.ConnsOutbound} {
			if v != rcmgr.Unlimited && int(v) < MaxIdleConns {
				t.Errorf("%s %s limit %d, under %d", name, what, v, MaxIdleConns)
			}
		}
		if l.FD != rcmgr.Unlimited && int(l.FD) < 2*MaxIdleConns {
			t.Errorf("%s descriptor limit %d, under %d (a connection has a descriptor at each end, both in this process)", name, l.FD, 2*MaxIdleConns)
		}
	}
}
