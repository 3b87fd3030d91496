package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
)

// What demo prints: a transcript for people, or one JSON object per line.

// demoSummary is the demo's last line.
type demoSummary struct {
	Nodes, Rounds, Exchanges, OK, Failed int
	Acks                                 int
	P50, P99, Elapsed                    time.Duration
}

// The JSON shapes of the demo's lines ("event" first, as run's).
type (
	jsonDemoNode struct {
		Event string `json:"event"`
		Name  string `json:"name"`
		Peer  string `json:"peer"`
		Addr  string `json:"addr"`
	}
	jsonDemoRound struct {
		Event     string `json:"event"`
		Round     int    `json:"round"`
		Exchanges int    `json:"exchanges"`
	}
	jsonDemoMessage struct {
		Event string  `json:"event"` // request or reply
		T     float64 `json:"t_ms"`
		From  string  `json:"from"`
		To    string  `json:"to"`
		Data  string  `json:"data"`
	}
	jsonDemoExchange struct {
		Event    string  `json:"event"`
		T        float64 `json:"t_ms"`
		From     string  `json:"from"`
		To       string  `json:"to"`
		OK       bool    `json:"ok"`
		Reason   string  `json:"reason"`
		Error    string  `json:"error,omitempty"`
		Attempts int     `json:"attempts"`
		Duration float64 `json:"duration_ms"`
	}
	jsonDemoSummary struct {
		Event     string  `json:"event"`
		Nodes     int     `json:"nodes"`
		Rounds    int     `json:"rounds"`
		Exchanges int     `json:"exchanges"`
		OK        int     `json:"ok"`
		Failed    int     `json:"failed"`
		Acks      int     `json:"acks"`
		P50       float64 `json:"p50_ms"`
		P99       float64 `json:"p99_ms"`
		Elapsed   float64 `json:"elapsed_ms"`
	}
)

// demoPrinter writes the transcript; the nodes' goroutines share it.
type demoPrinter struct {
	mu     sync.Mutex
	w      io.Writer
	asJSON bool
	// since is the time into the run. Read under mu, so that the times
	// of the transcript only grow, line after line, whichever goroutine
	// prints.
	since func() time.Duration
}

func (p *demoPrinter) line(text string, j any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.write(text, j)
}

// timedLine prints the line f makes of the time it is printed at.
func (p *demoPrinter) timedLine(f func(t time.Duration) (string, any)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.write(f(p.since()))
}

func (p *demoPrinter) write(text string, j any) {
	if !p.asJSON {
		_, _ = fmt.Fprintln(p.w, text)
		return
	}
	if j == nil {
		return
	}
	enc := json.NewEncoder(p.w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(j)
}

func (p *demoPrinter) header(nodes []*demoNode) {
	p.line(fmt.Sprintf("p2pnode demo: %d nodes on 127.0.0.1, fresh secp256k1 keys, one allowlist in memory", len(nodes)), nil)
	for _, n := range nodes {
		addr := n.h.Addrs()[0]
		tpt, _ := peer.SplitAddr(addr)
		p.line(fmt.Sprintf("  %-8s %s  %s", n.name, n.h.PeerID(), tpt),
			jsonDemoNode{"node", n.name, n.h.PeerID().String(), addr.String()})
	}
}

func (p *demoPrinter) round(r, exchanges int) {
	p.line(fmt.Sprintf("round %d: every node asks every other one (%d exchanges)", r, exchanges),
		jsonDemoRound{"round", r, exchanges})
}

func (p *demoPrinter) message(kind, from, to, data string) {
	p.timedLine(func(t time.Duration) (string, any) {
		return fmt.Sprintf("  %8s  %-8s -> %-8s %-8s %q", fmtMillis(t), from, to, kind, data),
			jsonDemoMessage{kind, millis(t), from, to, data}
	})
}

func (p *demoPrinter) outcome(from, to string, o handler.Outcome) {
	verdict := "ok in " + fmtMillis(o.Duration)
	if !o.OK {
		verdict = fmt.Sprintf("FAILED: %s after %s (%s)", o.Reason, plural(o.Attempts, "attempt"), errText(o.Err))
	}
	p.timedLine(func(t time.Duration) (string, any) {
		return fmt.Sprintf("  %8s  %-8s == %-8s exchange %s", fmtMillis(t), from, to, verdict),
			jsonDemoExchange{"exchange", millis(t), from, to, o.OK, string(o.Reason), errText(o.Err), o.Attempts, millis(o.Duration)}
	})
}

func (p *demoPrinter) summary(s demoSummary) {
	text := fmt.Sprintf("summary: %d exchanges, %d ok, %d failed; %d acks; latency p50 %s, p99 %s; %s in all",
		s.Exchanges, s.OK, s.Failed, s.Acks, fmtMillis(s.P50), fmtMillis(s.P99), fmtMillis(s.Elapsed))
	p.line(text, jsonDemoSummary{"summary", s.Nodes, s.Rounds, s.Exchanges, s.OK, s.Failed, s.Acks,
		millis(s.P50), millis(s.P99), millis(s.Elapsed)})
}

// fmtMillis shows a duration in milliseconds with one decimal.
func fmtMillis(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
}
