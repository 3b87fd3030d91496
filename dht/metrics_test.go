package dht

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

func TestMetrics(t *testing.T) {
	net := newNet(t, 2, nil)
	d := net.members[1].dht
	reg := prometheus.NewRegistry()
	if err := d.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if got := gauge(t, reg, "bitvmx_p2p_dht_routing_table_peers"); got != 1 {
		t.Errorf("routing table peers %v, want 1", got)
	}
	rec, err := d.Publish(timeout(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := gauge(t, reg, "bitvmx_p2p_dht_record_expiry_timestamp_seconds"); got < float64(rec.Expires.Unix()) || got <= float64(time.Now().Unix()) {
		t.Errorf("record expiry %v, the record expires %v", got, rec.Expires)
	}
	if err := net.members[0].dht.RegisterMetrics(reg); err == nil {
		t.Fatal("a second DHT registered in the same registry")
	}
	// The failed registration left the first one's collectors in place.
	if got := gauge(t, reg, "bitvmx_p2p_dht_routing_table_peers"); got != 1 {
		t.Errorf("routing table peers %v after a failed registration", got)
	}
	// Close takes them out (they read a closed routing table), and the
	// registry takes the next DHT's.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if fams, err := reg.Gather(); err != nil || len(fams) != 0 {
		t.Fatalf("after Close: %d families (%v)", len(fams), err)
	}
	if err := net.members[0].dht.RegisterMetrics(reg); err != nil {
		t.Fatalf("a DHT after the first closed: %v", err)
	}
	if err := d.RegisterMetrics(prometheus.NewRegistry()); err == nil {
		t.Fatal("a closed DHT registered its metrics")
	}
}
