package p2p

import (
	"time"

	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	pbv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/pb"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/prometheus/client_golang/prometheus"
)

// The tracers through which go-libp2p's relay service, AutoRelay and hole
// punching report to relayState.

// serviceTracer receives the relay service's events.
func (rs *relayState) serviceTracer() relay.MetricsTracer { return serviceTracer{rs} }

type serviceTracer struct{ rs *relayState }

func (t serviceTracer) RelayStatus(bool) {}
func (t serviceTracer) ConnectionOpened() {
	t.rs.addGauge(&t.rs.circuits, func(m *relayMetrics) prometheus.Gauge { return m.circuits }, 1)
}
func (t serviceTracer) ConnectionClosed(time.Duration) {
	t.rs.addGauge(&t.rs.circuits, func(m *relayMetrics) prometheus.Gauge { return m.circuits }, -1)
}
func (t serviceTracer) ConnectionRequestHandled(s pbv2.Status) { t.request("connect", s) }
func (t serviceTracer) ReservationAllowed(renewal bool) {
	if !renewal {
		t.rs.addGauge(&t.rs.served, func(m *relayMetrics) prometheus.Gauge { return m.served }, 1)
	}
}
func (t serviceTracer) ReservationClosed(n int) {
	t.rs.addGauge(&t.rs.served, func(m *relayMetrics) prometheus.Gauge { return m.served }, -int64(n))
}
func (t serviceTracer) ReservationRequestHandled(s pbv2.Status) { t.request("reserve", s) }
func (t serviceTracer) BytesTransferred(int)                    {}

func (t serviceTracer) request(kind string, s pbv2.Status) {
	if s != pbv2.Status_OK {
		t.rs.refused.Add(1)
	}
	if t.rs.m != nil {
		t.rs.m.requests.WithLabelValues(kind, statusLabel(s)).Inc()
	}
}

// statusLabel is the metric label of a relay status: "ok", "no_reservation"...
func statusLabel(s pbv2.Status) string {
	switch s {
	case pbv2.Status_OK:
		return "ok"
	case pbv2.Status_RESERVATION_REFUSED:
		return "reservation_refused"
	case pbv2.Status_RESOURCE_LIMIT_EXCEEDED:
		return "resource_limit_exceeded"
	case pbv2.Status_PERMISSION_DENIED:
		return "permission_denied"
	case pbv2.Status_CONNECTION_FAILED:
		return "connection_failed"
	case pbv2.Status_NO_RESERVATION:
		return "no_reservation"
	case pbv2.Status_MALFORMED_MESSAGE:
		return "malformed_message"
	default:
		return "other"
	}
}

// autorelayTracer counts the reservations AutoRelay holds. AutoRelay's
// tracer interface has methods on unexported types, so the tracer embeds
// go-libp2p's own (registered where the node's metrics go, or nowhere) and
// overrides the two it needs.
func (rs *relayState) autorelayTracer() autorelay.MetricsTracer {
	reg := rs.metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return autorelayTracer{MetricsTracer: autorelay.NewMetricsTracer(autorelay.WithRegisterer(reg)), rs: rs}
}

type autorelayTracer struct {
	autorelay.MetricsTracer
	rs *relayState
}

// AutoRelay counts a new reservation when its request succeeds, the ones
// it already held when it (re)starts, and the ones that end.
func (t autorelayTracer) ReservationRequestFinished(refresh bool, err error) {
	t.MetricsTracer.ReservationRequestFinished(refresh, err)
	if !refresh && err == nil {
		t.rs.reserved(1)
	}
}

func (t autorelayTracer) ReservationOpened(n int) {
	t.MetricsTracer.ReservationOpened(n)
	if n > 0 {
		t.rs.reserved(int64(n))
	}
}

func (t autorelayTracer) ReservationEnded(n int) {
	t.MetricsTracer.ReservationEnded(n)
	if n > 0 {
		t.rs.reserved(-int64(n))
	}
}

// reserved adds d to the reservations held and reports the new count. The
// count and its event change under one lock, so events arrive in order.
func (rs *relayState) reserved(d int64) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.addGauge(&rs.reservations, func(m *relayMetrics) prometheus.Gauge { return m.reservations }, d)
	rs.push(RelayReservations{Count: int(rs.reservations.Load())})
}

// holePunchTracer counts the hole punches this node started.
func (rs *relayState) holePunchTracer() holepunch.EventTracer { return holePunchTracer{rs} }

type holePunchTracer struct{ rs *relayState }

func (t holePunchTracer) Trace(evt *holepunch.Event) {
	e, ok := evt.Evt.(*holepunch.EndHolePunchEvt)
	if !ok {
		return
	}
	if e.Success {
		t.rs.hpOK.Add(1)
	} else {
		t.rs.hpFail.Add(1)
	}
	if t.rs.m != nil {
		t.rs.m.holePunch[e.Success].Inc()
	}
	t.rs.push(HolePunch{Peer: evt.Remote, OK: e.Success, Err: e.Error})
}
