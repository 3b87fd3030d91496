package handler

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the handler's Prometheus collectors. A nil *metrics records
// nothing, so a handler without a registry pays one nil check per exchange.
// Every label child is resolved here, once: ending an exchange only adds to
// a counter and observes a histogram, with no label lookup or allocation.
type metrics struct {
	reg      prometheus.Registerer
	cols     []prometheus.Collector
	exchange [numKinds][numRoles]exchangeMetrics
	// results is the vector, for a reason this build does not list (none
	// today; a guard against a new Reason added without updating
	// allReasons).
	results *prometheus.CounterVec
	// unknown counts replies refused as unknown_exchange.
	unknown prometheus.Counter
	// dropped counts stored replies dropped past a peer's bound.
	dropped prometheus.Counter
}

// exchangeMetrics are the children of one (kind, role).
type exchangeMetrics struct {
	results  map[Reason]prometheus.Counter
	duration prometheus.Observer
}

// Array bounds for Kind and Role, whose values start at 1.
const (
	numKinds = int(KindMessage) + 1
	numRoles = int(Responder) + 1
)

// allReasons lists every Reason an Outcome can carry, for the result label.
var allReasons = []Reason{
	ReasonOK, ReasonDialFailed, ReasonDisconnected, ReasonNotAcked, ReasonAckTimeout,
	ReasonReplyTimeout, ReasonUnexpectedMessage, ReasonRateLimited, ReasonClosed, ReasonUnknownExchange,
	ReasonPeerRemoved, ReasonCancelled, ReasonUnanswered,
}

// newMetrics registers the handler's collectors in reg; nil reg means no
// metrics.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	results := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "bitvmx", Subsystem: "p2p", Name: "exchanges_total",
		Help: "Exchanges ended, by kind (request, message), role (dialer, responder) and result: ok, or the reason it failed.",
	}, []string{"kind", "role", "result"})
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "bitvmx", Subsystem: "p2p", Name: "exchange_duration_seconds",
		Help: "Time from Request or Send (for a responder: from receiving the request) to the exchange's end, ok or not.",
		// 100 µs (a kept loopback connection) to ~52 s (past the default
		// reply timeout of 30 s).
		Buckets: prometheus.ExponentialBuckets(100e-6, 2, 20),
	}, []string{"kind", "role"})
	unknown := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "bitvmx", Subsystem: "p2p", Name: "unknown_exchange_replies_total",
		Help: "Replies refused with unknown_exchange: they answer an exchange this process does not know (its previous life's, or another process's with the same key). Not misbehaviour.",
	})
	dropped := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "bitvmx", Subsystem: "p2p", Name: "stored_replies_dropped_total",
		Help: "Replies kept in the store for resends of answered requests, dropped before their time because their peer's stored replies passed MaxInboxBytesPerPeer, or every peer's passed MaxInboxBytes (the largest holder's first, oldest first).",
	})
	m := &metrics{reg: reg, results: results, unknown: unknown, dropped: dropped}
	for _, k := range []Kind{KindRequest, KindMessage} {
		for _, r := range []Role{Dialer, Responder} {
			em := exchangeMetrics{
				results:  make(map[Reason]prometheus.Counter, len(allReasons)),
				duration: durations.WithLabelValues(k.String(), r.String()),
			}
			for _, reason := range allReasons {
				em.results[reason] = results.WithLabelValues(k.String(), r.String(), string(reason))
			}
			m.exchange[k][r] = em
		}
	}
	for _, c := range []prometheus.Collector{results, durations, unknown, dropped} {
		if err := reg.Register(c); err != nil {
			m.unregister()
			return nil, fmt.Errorf("handler: register metrics (one handler per registry, or wrap it with prometheus.WrapRegistererWith): %w", err)
		}
		m.cols = append(m.cols, c)
	}
	return m, nil
}

// unknownExchange counts a reply refused as unknown_exchange.
func (m *metrics) unknownExchange() {
	if m != nil {
		m.unknown.Inc()
	}
}

// replyDropped counts a stored reply dropped past its peer's bound.
func (m *metrics) replyDropped() {
	if m != nil {
		m.dropped.Inc()
	}
}

// ended records an exchange's end.
func (m *metrics) ended(k Kind, r Role, reason Reason, d time.Duration) {
	if m == nil || k < KindRequest || int(k) >= numKinds || r < Dialer || int(r) >= numRoles {
		return
	}
	em := &m.exchange[k][r]
	c := em.results[reason]
	if c == nil {
		c = m.results.WithLabelValues(k.String(), r.String(), string(reason))
	}
	c.Inc()
	em.duration.Observe(d.Seconds())
}

// unregister removes the collectors registered so far, when the handler
// could not be built after all or has closed.
func (m *metrics) unregister() {
	if m == nil {
		return
	}
	for _, c := range m.cols {
		m.reg.Unregister(c)
	}
	m.cols = nil
}
