package p2p

import (
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
)

// Refusals of one key are reported at once, then folded for
// RefusalInterval; the events' counts always add up to the metric, also
// for keys past the cap and at shutdown.
func TestRefusalsAggregate(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var got []Refused
	r := &refusals{emit: func(ev Refused) { got = append(got, ev) }, log: zap.NewNop(), metrics: m,
		name: func(peer.ID) string { return "" }}
	ip := netip.MustParseAddr("127.0.0.1")
	t0 := time.Unix(1000, 0)
	a := Refused{Peer: "a", IP: ip, Reason: RefusedUnknownPeer}
	b := Refused{IP: ip, Reason: RefusedIPNotAllowlisted}

	r.refuse(a, t0)
	r.refuse(a, t0.Add(time.Second))
	r.refuse(a, t0.Add(2*time.Second))
	r.refuse(b, t0.Add(2*time.Second))
	if len(got) != 2 || got[0].Count != 1 || got[1].Count != 1 {
		t.Fatalf("first refusals: %+v", got)
	}
	r.flush(t0.Add(RefusalInterval-time.Millisecond), false)
	if len(got) != 2 {
		t.Fatalf("flushed before the interval: %+v", got)
	}
	r.flush(t0.Add(RefusalInterval), false)
	if len(got) != 3 || got[2].Peer != "a" || got[2].Count != 2 {
		t.Fatalf("after the interval: %+v", got)
	}
	// Idle for an interval: forgotten, so the next one is reported at once.
	r.flush(t0.Add(3*RefusalInterval), false)
	if len(r.keys) != 0 {
		t.Fatalf("keys kept: %v", r.keys)
	}
	r.refuse(a, t0.Add(3*RefusalInterval))
	if len(got) != 4 || got[3].Count != 1 {
		t.Fatalf("after forgetting: %+v", got)
	}

	// Past the cap, new keys are counted under their reason alone.
	for i := range maxRefusalKeys + 10 {
		r.refuse(Refused{IP: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Reason: RefusedIPBanned}, t0.Add(4*RefusalInterval))
	}
	if len(r.keys) > maxRefusalKeys+1 {
		t.Fatalf("%d keys", len(r.keys))
	}
	r.flush(t0.Add(4*RefusalInterval), true)

	var sum uint64
	for _, ev := range got {
		sum += ev.Count
	}
	var metric float64
	for _, reason := range refusalReasons {
		var d dto.Metric
		if err := m.refusedBy[reason].Write(&d); err != nil {
			t.Fatal(err)
		}
		metric += d.GetCounter().GetValue()
	}
	if want := uint64(5 + maxRefusalKeys + 10); sum != want || uint64(metric) != want {
		t.Fatalf("events count %d, metric %v, want %d", sum, metric, want)
	}
}
