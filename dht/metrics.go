package dht

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics registers the DHT's Prometheus collectors in reg, beside
// the node's and the handler's (docs/operations.md lists them all):
//
//   - bitvmx_p2p_dht_routing_table_peers: peers in the routing table. At 0
//     the node can neither find others nor be found.
//   - bitvmx_p2p_dht_record_expiry_timestamp_seconds: when the last record
//     this node published expires (Unix time; 0 before the first). A value
//     drawing near the present means publishing keeps failing.
//
// Both are read when the registry is scraped, so the DHT pays nothing in
// between. One DHT per registry: a second registration fails. Close
// removes them, leaving the registry free for the next DHT.
func (d *DHT) RegisterMetrics(reg prometheus.Registerer) error {
	cols := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "bitvmx", Subsystem: "p2p", Name: "dht_routing_table_peers",
			Help: "Peers in the DHT routing table.",
		}, func() float64 { return float64(d.kad.RoutingTable().Size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "bitvmx", Subsystem: "p2p", Name: "dht_record_expiry_timestamp_seconds",
			Help: "When the last node record this node published expires, in Unix seconds; 0 before the first.",
		}, func() float64 {
			r, ok := d.Published()
			if !ok {
				return 0
			}
			return float64(r.Expires.UnixNano()) / 1e9
		}),
	}
	unregister := func(cols []prometheus.Collector) {
		for _, c := range cols {
			reg.Unregister(c)
		}
	}
	for i, c := range cols {
		if err := reg.Register(c); err != nil {
			unregister(cols[:i])
			return fmt.Errorf("dht: register metrics (one DHT per registry): %w", err)
		}
	}
	d.goMu.Lock()
	defer d.goMu.Unlock()
	if d.closed {
		unregister(cols)
		return errors.New("dht: register metrics: the DHT is closed")
	}
	prev := d.unregister
	d.unregister = func() {
		unregister(cols)
		if prev != nil {
			prev()
		}
	}
	return nil
}
