package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/dht"
)

// metricsServer serves the process's own Prometheus registry at /metrics.
// A registry of our own (not prometheus.DefaultRegisterer) keeps the
// exposition to what p2pnode registers, and leaves no global state behind.
type metricsServer struct {
	reg  *prometheus.Registry
	srv  *http.Server
	addr string // the address actually bound (port 0 resolved)
	done chan struct{}
}

// newRegistry returns the registry with the collectors every p2pnode has:
// Go runtime and process statistics.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// registerDHTMetrics adds the DHT's collectors to the registry (nil d:
// none). The node's and the handler's are registered by p2p and handler
// themselves, through their Config.Metrics.
func registerDHTMetrics(reg prometheus.Registerer, d *dht.DHT) error {
	if d == nil {
		return nil
	}
	return d.RegisterMetrics(reg)
}

// startMetrics binds addr and serves /metrics on it. The bind happens here,
// before the node starts, so that a port in use fails the command at once.
func startMetrics(addr string, log *zap.Logger) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	m := &metricsServer{reg: newRegistry(), addr: ln.Addr().String(), done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: zap.NewStdLog(log),
	}))
	m.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(log),
	}
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", zap.Error(err))
		}
	}()
	return m, nil
}

// close stops the server and waits for its goroutine. A scrape in progress
// gets a few seconds to finish.
func (m *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		m.srv.Close()
	}
	<-m.done
}
