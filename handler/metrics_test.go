package handler_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// sample returns the value of the metric name whose labels are exactly
// labels: a counter's value or a histogram's sample count.
func sample(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if sameLabels(m.GetLabel(), labels) {
				if h := m.GetHistogram(); h != nil {
					return float64(h.GetSampleCount())
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func sameLabels(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}

// Every exchange ends in one count by kind, role and result, and one
// duration sample; the handler's metrics share a registry with its node's.
func TestMetrics(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	a := newHandler(t, ia, list, handler.WithMetrics(regA), handler.WithNode(func(c *p2p.Config) { c.Metrics = regA }))
	b := newHandler(t, ib, list, handler.WithMetrics(regB))
	echo(t, b)

	id, err := a.Request(ib.ID, addr(b), []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a, id), true, handler.ReasonOK)
	id, err = a.Send(ib.ID, addr(b), []byte("note"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a, id), true, handler.ReasonOK)
	// A request to a peer that is not listening fails: dial_failed.
	ic := tu.NewIdentity(t)
	if err := list.Add(allowEntry(ic)); err != nil {
		t.Fatal(err)
	}
	id, err = a.Request(ic.ID, deadAddr(t), []byte("anyone?"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a, id), false, handler.ReasonDialFailed)

	for _, c := range []struct {
		kind, result string
		want         float64
	}{
		{"request", "ok", 1}, {"message", "ok", 1}, {"request", "dial_failed", 1}, {"request", "reply_timeout", 0},
	} {
		labels := map[string]string{"kind": c.kind, "role": "dialer", "result": c.result}
		if got := sample(t, regA, "bitvmx_p2p_exchanges_total", labels); got != c.want {
			t.Errorf("exchanges_total%v = %v, want %v", labels, got, c.want)
		}
	}
	if got := sample(t, regA, "bitvmx_p2p_exchange_duration_seconds", map[string]string{"kind": "request", "role": "dialer"}); got != 2 {
		t.Errorf("request dialer durations: %v samples, want 2", got)
	}
	// The responder's outcome ends once a acks the reply: wait for it
	// rather than for the count.
	tu.NextMatch(t, b.Outcomes(), func(o *handler.Outcome) bool { return o.Role == handler.Responder })
	if got := sample(t, regB, "bitvmx_p2p_exchanges_total", map[string]string{"kind": "request", "role": "responder", "result": "ok"}); got != 1 {
		t.Errorf("responder ok = %v, want 1", got)
	}

	// The node's metrics are in regA too.
	fams, err := regA.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		names = append(names, f.GetName())
	}
	if all := strings.Join(names, " "); !strings.Contains(all, "bitvmx_p2p_messages_sent_total") {
		t.Errorf("node metrics missing from the shared registry: %s", all)
	}

	// A second handler on the same registry is refused, without leaking
	// a node (goleak checks).
	if _, err := handler.New(nil, tu.NewIdentity(t).Key, list, handler.WithMetrics(regB)); err == nil {
		t.Fatal("second handler on one registry accepted")
	}
}

// deadAddr is a loopback address nothing listens on: a port just freed.
func deadAddr(t *testing.T) ma.Multiaddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return ma.StringCast("/ip4/127.0.0.1/tcp/" + strconv.Itoa(port))
}

// TestMetricsCloseSuspendsNoCount: with a store, Close suspends a running
// request rather than ending it (it resumes at the next start, and is
// counted when it ends then): it is not counted as an exchange ended
// closed.
func TestMetricsCloseSuspendsNoCount(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	reg := prometheus.NewRegistry()
	a := newNode(t, ia, list, handler.WithRetry(1000, 10*time.Millisecond, 50*time.Millisecond),
		handler.WithMetrics(keptRegistry{reg}))
	if _, err := a.h.Request(ib.ID, deadAddr(t), []byte("ping")); err != nil {
		t.Fatal(err)
	}
	a.stop()
	labels := map[string]string{"kind": "request", "role": "dialer", "result": "closed"}
	if got := sample(t, reg, "bitvmx_p2p_exchanges_total", labels); got != 0 {
		t.Errorf("exchanges_total%v = %v, want 0: the exchange was suspended, not ended", labels, got)
	}
	if got := sample(t, reg, "bitvmx_p2p_exchange_duration_seconds", map[string]string{"kind": "request", "role": "dialer"}); got != 0 {
		t.Errorf("request dialer durations: %v samples, want 0", got)
	}
}

// keptRegistry keeps the collectors a closed handler takes out, for a test
// to read what the handler counted until it closed.
type keptRegistry struct{ *prometheus.Registry }

func (keptRegistry) Unregister(prometheus.Collector) bool { return true }

// TestMetricsFreedWhenClosed: a closed handler, and its node, leave none of
// their collectors in the registry, so a handler made after it (a restart
// in the same process) registers on it again.
func TestMetricsFreedWhenClosed(t *testing.T) {
	id := tu.NewIdentity(t)
	list := tu.Allowlist(t, id)
	reg := prometheus.NewRegistry()
	for range 2 {
		h := newHandler(t, id, list, handler.WithMetrics(reg), func(c *handler.Config) { c.Node.Metrics = reg })
		if err := h.Close(); err != nil {
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
