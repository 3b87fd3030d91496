package gossip

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the service's collectors; a nil *metrics records nothing.
type metrics struct {
	version  prometheus.Gauge
	applied  prometheus.Counter
	rejected map[Reason]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	const ns, sub = "bitvmx", "membership"
	rej := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rejected_total",
		Help: "Membership versions or sessions refused, by reason."}, []string{"reason"})
	m := &metrics{
		version: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "version",
			Help: "Version of the membership document in force."}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "applied_total",
			Help: "Membership versions applied since start."}),
		rejected: make(map[Reason]prometheus.Counter),
	}
	for _, r := range allReasons {
		m.rejected[r] = rej.WithLabelValues(string(r))
	}
	for _, c := range []prometheus.Collector{m.version, m.applied, rej} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gossip: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) setVersion(v uint64, applied bool) {
	if m == nil {
		return
	}
	m.version.Set(float64(v))
	if applied {
		m.applied.Inc()
	}
}

func (m *metrics) reject(r Reason) {
	if m != nil {
		m.rejected[r].Inc()
	}
}
