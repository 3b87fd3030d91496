package p2p

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// metrics are the node's Prometheus collectors. A nil *metrics records
// nothing, so that a node without a registry pays one nil check per event.
// Label values are resolved once here: the hot path only adds to a counter.
type metrics struct {
	peers        prometheus.Gauge
	sent         map[Reason]prometheus.Counter // by outcome: ok or the not-ok reason
	received     map[Reason]prometheus.Counter // by the ack the node gave
	bytesSent    prometheus.Counter
	bytesRecv    prometheus.Counter
	ackLatency   prometheus.Histogram
	misbehaviour map[ratelimit.Reason]prometheus.Counter
	limitPeer    map[ratelimit.Reason]prometheus.Counter
	limitIP      map[ratelimit.Reason]prometheus.Counter
	dropped      prometheus.Counter
	refusedBy    map[RefusalReason]prometheus.Counter
	idleClosed   prometheus.Counter
	wrongAddrs   prometheus.Counter

	reg  prometheus.Registerer
	cols []prometheus.Collector // registered in reg
}

// allReasons lists every Reason a Status or an ack can carry.
var allReasons = []Reason{
	ReasonOK, ReasonTooLarge, ReasonMalformed, ReasonRateLimited, ReasonBusy,
	ReasonNotRouted, ReasonShuttingDown, ReasonNotConnected, ReasonDialFailed,
	ReasonRejected, ReasonAckTimeout, ReasonConnectionLost, ReasonQueueFull,
	ReasonClosed, ReasonProtocolError, ReasonUnknownExchange, ReasonTooManyInFlight,
	ReasonUnanswered, ReasonRefused,
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	const ns, sub = "bitvmx", "p2p"
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: ns, Subsystem: sub, Name: name, Help: help}
	}
	sentVec := prometheus.NewCounterVec(prometheus.CounterOpts(opts("messages_sent_total",
		"Messages sent, by outcome: ok, or the reason they were not acknowledged.")), []string{"result"})
	recvVec := prometheus.NewCounterVec(prometheus.CounterOpts(opts("messages_received_total",
		"Message frames received, by the ack given: ok (delivered), busy, not_routed, too_large, malformed...")), []string{"result"})
	misVec := prometheus.NewCounterVec(prometheus.CounterOpts(opts("misbehaviour_total",
		"Rate-limit tokens spent, by reason.")), []string{"reason"})
	refusedVec := prometheus.NewCounterVec(prometheus.CounterOpts(opts("connections_refused_total",
		"Inbound connections the gater refused, by reason; the counts of the Refused events add up to it.")), []string{"reason"})
	limitVec := prometheus.NewCounterVec(prometheus.CounterOpts(opts("connection_limits_total",
		"Peers or IPs cut off after exhausting their misbehaviour budget.")), []string{"kind", "reason"})
	m := &metrics{
		peers:     prometheus.NewGauge(prometheus.GaugeOpts(opts("connected_peers", "Peers with at least one open connection."))),
		bytesSent: prometheus.NewCounter(prometheus.CounterOpts(opts("payload_bytes_sent_total", "Payload bytes of messages written to peers."))),
		bytesRecv: prometheus.NewCounter(prometheus.CounterOpts(opts("payload_bytes_received_total", "Payload bytes of messages delivered to the application."))),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "ack_latency_seconds",
			Help: "Time from writing a message to reading its ack.", Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18)}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts(opts("dropped_total", "Received messages dropped because the Receiver buffer was full."))),
		idleClosed: prometheus.NewCounter(prometheus.CounterOpts(opts("streams_idle_closed_total",
			"Message streams this node closed after they carried nothing for StreamIdleTimeout (their connection stays)."))),
		wrongAddrs: prometheus.NewCounter(prometheus.CounterOpts(opts("wrong_address_dials_total",
			"Dials that reached another key than the peer's at one of its addresses; the address is not dialed for that peer for 10 minutes."))),
		sent:         make(map[Reason]prometheus.Counter),
		received:     make(map[Reason]prometheus.Counter),
		misbehaviour: make(map[ratelimit.Reason]prometheus.Counter),
		limitPeer:    make(map[ratelimit.Reason]prometheus.Counter),
		limitIP:      make(map[ratelimit.Reason]prometheus.Counter),
		refusedBy:    make(map[RefusalReason]prometheus.Counter),
	}
	for _, r := range refusalReasons {
		m.refusedBy[r] = refusedVec.WithLabelValues(string(r))
	}
	for _, r := range allReasons {
		m.sent[r] = sentVec.WithLabelValues(string(r))
		m.received[r] = recvVec.WithLabelValues(string(r))
	}
	for _, r := range ratelimit.Reasons() {
		m.misbehaviour[r] = misVec.WithLabelValues(r.String())
		m.limitPeer[r] = limitVec.WithLabelValues("peer", r.String())
		m.limitIP[r] = limitVec.WithLabelValues("ip", r.String())
	}
	m.reg = reg
	for _, c := range []prometheus.Collector{m.peers, sentVec, recvVec, m.bytesSent, m.bytesRecv, m.ackLatency, misVec, limitVec, refusedVec, m.dropped, m.idleClosed, m.wrongAddrs} {
		if err := reg.Register(c); err != nil {
			m.unregister()
			return nil, fmt.Errorf("p2p: register metrics (one node per registry, or wrap it with prometheus.WrapRegistererWith): %w", err)
		}
		m.cols = append(m.cols, c)
	}
	return m, nil
}

// unregister removes the collectors registered so far, when the node could
// not be built after all or has closed: the registry is left free for the
// next node.
func (m *metrics) unregister() {
	if m == nil {
		return
	}
	for _, c := range m.cols {
		m.reg.Unregister(c)
	}
	m.cols = nil
}

func (m *metrics) statusSent(r Reason) {
	if m != nil {
		if c := m.sent[r]; c != nil {
			c.Inc()
		}
	}
}

func (m *metrics) written(size int) {
	if m != nil {
		m.bytesSent.Add(float64(size))
	}
}

func (m *metrics) acked(since time.Time) {
	if m != nil {
		m.ackLatency.Observe(time.Since(since).Seconds())
	}
}

func (m *metrics) frameReceived(r Reason, size int) {
	if m == nil {
		return
	}
	if c := m.received[r]; c != nil {
		c.Inc()
	}
	if r == ReasonOK {
		m.bytesRecv.Add(float64(size))
	}
}

// droppedOne counts a message refused busy because the Receiver was full,
// as a Dropped event reports it; a busy verdict of Config.Accept is not
// one.
func (m *metrics) droppedOne() {
	if m != nil {
		m.dropped.Inc()
	}
}

func (m *metrics) wrongAddrDial() {
	if m != nil {
		m.wrongAddrs.Inc()
	}
}

func (m *metrics) spent(r ratelimit.Reason) {
	if m != nil {
		if c := m.misbehaviour[r]; c != nil {
			c.Inc()
		}
	}
}

func (m *metrics) limited(ev ConnectionLimit) {
	if m == nil {
		return
	}
	byKind := m.limitIP
	if ev.Peer != "" {
		byKind = m.limitPeer
	}
	if c := byKind[ev.Reason]; c != nil {
		c.Inc()
	}
}

func (m *metrics) peerCount(delta int) {
	if m != nil {
		m.peers.Add(float64(delta))
	}
}

func (m *metrics) refused(r RefusalReason) {
	if m != nil {
		if c := m.refusedBy[r]; c != nil {
			c.Inc()
		}
	}
}

func (m *metrics) streamIdleClosed() {
	if m != nil {
		m.idleClosed.Inc()
	}
}
