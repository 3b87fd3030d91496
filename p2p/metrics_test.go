package p2p_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// metricValue sums the samples of a family whose labels include want.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			sum += value(m)
		}
	}
	return sum
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestMetrics(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	a := tu.Node(t, ia, list, func(c *p2p.Config) { c.Metrics = regA; c.MaxMessageSize = 10 })
	b := tu.Node(t, ib, list, func(c *p2p.Config) { c.Metrics = regB })

	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: []byte("12345")}
	tu.Next[p2p.Status](t, a.Receiver())
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), ID: 2, Data: make([]byte, 11)}
	tu.Next[p2p.Status](t, a.Receiver())
	tu.Next[p2p.Data](t, b.Receiver())

	checks := []struct {
		reg    *prometheus.Registry
		name   string
		labels map[string]string
		want   float64
	}{
		{regA, "bitvmx_p2p_messages_sent_total", map[string]string{"result": "ok"}, 1},
		{regA, "bitvmx_p2p_messages_sent_total", map[string]string{"result": "too_large"}, 1},
		{regA, "bitvmx_p2p_payload_bytes_sent_total", nil, 5},
		{regA, "bitvmx_p2p_ack_latency_seconds", nil, 1},
		{regA, "bitvmx_p2p_connected_peers", nil, 1},
		{regB, "bitvmx_p2p_messages_received_total", map[string]string{"result": "ok"}, 1},
		{regB, "bitvmx_p2p_payload_bytes_received_total", nil, 5},
	}
	for _, c := range checks {
		if got := metricValue(t, c.reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// go-libp2p's own collectors share the registry.
	fams, _ := regA.Gather()
	libp2p := 0
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "libp2p_") {
			libp2p++
		}
	}
	if libp2p == 0 {
		t.Error("no libp2p_* metrics registered")
	}
}

func TestMetricsRegistryShared(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	reg := prometheus.NewRegistry()
	tu.Node(t, ia, list, func(c *p2p.Config) { c.Metrics = reg })
	// A second node on the same registry is an error that says what to do,
	// not a panic.
	if _, err := p2p.New(p2p.Config{Key: ib.Key, Allowlist: list, Metrics: reg}); err == nil || !strings.Contains(err.Error(), "WrapRegistererWith") {
		t.Fatalf("err = %v", err)
	}
	// Nodes on one registry, each wrapped with its own label, work.
	shared := prometheus.NewRegistry()
	for i, id := range []tu.Identity{ia, ib} {
		tu.Node(t, id, list, func(c *p2p.Config) {
			c.Metrics = prometheus.WrapRegistererWith(prometheus.Labels{"node": string(rune('a' + i))}, shared)
		})
	}
}

// TestMetricsBusyVerdictIsNoDrop: a message Config.Accept answers busy is
// counted as received busy, not as dropped: dropped_total counts what the
// Dropped events report, messages refused because the Receiver was full.
func TestMetricsBusyVerdictIsNoDrop(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	reg := prometheus.NewRegistry()
	a := tu.Node(t, ia, list)
	b := tu.Node(t, ib, list, func(c *p2p.Config) {
		c.Metrics = reg
		c.Accept = func(p2p.Data) (p2p.Reason, func() p2p.Reason) { return p2p.ReasonBusy, nil }
	})
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: []byte("x")}
	if st := tu.Next[p2p.Status](t, a.Receiver()); st.Reason != p2p.ReasonBusy {
		t.Fatalf("status %+v, want busy", st)
	}
	if got := metricValue(t, reg, "bitvmx_p2p_messages_received_total", map[string]string{"result": "busy"}); got != 1 {
		t.Errorf("messages_received_total{busy} = %v, want 1", got)
	}
	if got := metricValue(t, reg, "bitvmx_p2p_dropped_total", nil); got != 0 {
		t.Errorf("dropped_total = %v, want 0: the Receiver had room and no Dropped was reported", got)
	}
}

// TestMetricsUnreadableFrameCounted: a frame refused before its body is
// read (its length prefix is over the limit) got an ack, too_large, and is
// counted in messages_received_total as such.
func TestMetricsUnreadableFrameCounted(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	reg := prometheus.NewRegistry()
	a := tu.Node(t, ia, list)
	b := tu.Node(t, ib, list, func(c *p2p.Config) { c.Metrics = reg; c.MaxMessageSize = 10 })
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: make([]byte, 64<<10)}
	if st := tu.Next[p2p.Status](t, a.Receiver()); st.Reason != p2p.ReasonTooLarge {
		t.Fatalf("status %+v, want too_large", st)
	}
	if got := metricValue(t, reg, "bitvmx_p2p_messages_received_total", map[string]string{"result": "too_large"}); got != 1 {
		t.Errorf("messages_received_total{too_large} = %v, want 1", got)
	}
}

// TestMetricsFreedWhenNewFails: a node that could not start (here its
// relay metrics collide with a collector already in the registry) leaves
// none of its collectors behind, so the next try on the registry starts.
func TestMetricsFreedWhenNewFails(t *testing.T) {
	ia := tu.NewIdentity(t)
	list := tu.Allowlist(t, ia)
	reg := prometheus.NewRegistry()
	// The node's own name and help: a registry keeps a name's shape for
	// good, even once its collector is unregistered.
	taken := prometheus.NewGauge(prometheus.GaugeOpts{Name: "bitvmx_p2p_relay_circuits", Help: "Circuits this relay carries between members now."})
	reg.MustRegister(taken)
	if n, err := p2p.New(p2p.Config{Key: ia.Key, Allowlist: list, Metrics: reg}); err == nil {
		n.Close()
		t.Fatal("a node registered a metric already in the registry")
	}
	reg.Unregister(taken)
	tu.Node(t, ia, list, func(c *p2p.Config) { c.Metrics = reg })
}

// TestMetricsFreedWhenClosed: a closed node leaves none of its collectors
// in the registry, so a node made after it (a restart in the same process)
// registers on it again; the closed one's counts are no longer shown.
func TestMetricsFreedWhenClosed(t *testing.T) {
	ia := tu.NewIdentity(t)
	list := tu.Allowlist(t, ia)
	reg := prometheus.NewRegistry()
	for range 2 {
		n := tu.Node(t, ia, list, func(c *p2p.Config) { c.Metrics = reg })
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if strings.HasPrefix(f.GetName(), "bitvmx_p2p_") {
				t.Fatalf("%s still registered after Close", f.GetName())
			}
		}
	}
}
