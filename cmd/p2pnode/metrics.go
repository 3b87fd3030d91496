package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
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
	// ready answers /readyz; unset: not ready yet (the node is starting).
	ready atomic.Pointer[func() error]
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

// startMetrics binds addr and serves /metrics on it, and the health checks
// /livez (200 while the process serves HTTP) and /readyz (200 once the node
// is ready: see setReady). The bind happens here,
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
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { health(w, nil) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		err := errors.New("starting")
		if f := m.ready.Load(); f != nil {
			err = (*f)()
		}
		health(w, err)
	})
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

// setReady makes /readyz answer 200 while ready returns nil, and 503 with
// its error otherwise. Until it is called /readyz says "starting".
func (m *metricsServer) setReady(ready func() error) { m.ready.Store(&ready) }

// health writes a health check's answer: 200 "ok", or 503 and the reason,
// as one line of text.
func health(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %v\n", err)
		return
	}
	fmt.Fprintln(w, "ok")
}
