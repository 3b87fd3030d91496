package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

const demoLong = `demo starts a few nodes in this process on 127.0.0.1, with freshly
generated keys and an allowlist held in memory, and has every node ask every
other one a question, all at once, through the Multi-Exchange Handler: each
exchange dials, sends the request, gets it acknowledged, gets the reply,
acknowledges it and disconnects. It prints what happens, then a summary
(exchanges, acknowledgments, failures, latency), and exits 0 when every
exchange completed. No files, flags or network access are needed.`

// demoOptions are demo's flags.
type demoOptions struct {
	nodes, rounds int
	asJSON        bool
	timeout       time.Duration
}

// newDemoCmd builds "demo".
func newDemoCmd(a *app) *cobra.Command {
	o := demoOptions{nodes: 3, rounds: 2, timeout: 30 * time.Second}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a few nodes on loopback that exchange requests and replies, and summarize",
		Long:  demoLong,
		Example: `  p2pnode demo
  p2pnode demo --nodes 5 --rounds 3
  p2pnode demo --json | jq 'select(.event == "summary")'`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			switch {
			case o.nodes < 2 || o.nodes > 32:
				return usageErrorf("--nodes must be between 2 and 32 (got %d)", o.nodes)
			case o.rounds < 1 || o.rounds > 100:
				return usageErrorf("--rounds must be between 1 and 100 (got %d)", o.rounds)
			case o.timeout <= 0:
				return usageErrorf("--timeout must be positive (got %s)", o.timeout)
			}
			return runDemo(a, o)
		},
	}
	cmd.Flags().IntVar(&o.nodes, "nodes", o.nodes, "how many nodes to run (2 to 32)")
	cmd.Flags().IntVar(&o.rounds, "rounds", o.rounds, "how many times each node asks each other one")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print one JSON object per line instead of text")
	cmd.Flags().DurationVar(&o.timeout, "timeout", o.timeout, "give up on exchanges still running after this long")
	return cmd
}

// demoNode is one node of the demo and the goroutine that answers for it.
type demoNode struct {
	name string
	h    *handler.Handler
	// outcomes of the exchanges this node dialed, and of those it answered.
	dialed, answered chan handler.Outcome
}

// demo is one run of the demo.
type demo struct {
	out   *demoPrinter
	nodes []*demoNode
	byID  map[peer.ID]*demoNode
	// start is when the exchanges began, in Unix nanoseconds: read by the
	// nodes' goroutines, which learn of it through the network, where the
	// race detector sees no ordering.
	start  atomic.Int64
	serves sync.WaitGroup
}

func runDemo(a *app, o demoOptions) error {
	log, err := newLogger(a.log, a.err)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	routeLibp2pLogs(log)
	d := &demo{byID: make(map[peer.ID]*demoNode)}
	d.out = &demoPrinter{w: a.out, asJSON: o.asJSON, since: d.since}
	defer d.close()
	if err := d.startNodes(o.nodes, o.rounds*(o.nodes-1), log); err != nil {
		return err
	}
	d.out.header(d.nodes)

	perRound := o.nodes * (o.nodes - 1)
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	d.start.Store(time.Now().UnixNano())
	var durations []time.Duration
	failed := 0
	for round := 1; round <= o.rounds; round++ {
		d.out.round(round, perRound)
		for _, phase := range phases(o.nodes) {
			res, err := d.runPhase(ctx, round, phase)
			for _, r := range res {
				if r.OK {
					durations = append(durations, r.Duration)
				} else {
					failed++
				}
			}
			if err != nil {
				return err
			}
		}
	}
	// A dialer's OK outcome means its request was acknowledged (or
	// answered, which proves it arrived); a responder's, that its reply
	// was. Wait for the responders' so that the count is complete.
	acks := len(durations)
	for _, n := range d.nodes {
		for range o.rounds * (o.nodes - 1) {
			select {
			case r := <-n.answered:
				if r.OK {
					acks++
				} else {
					failed++
				}
			case <-ctx.Done():
				return fmt.Errorf("demo: replies still unacknowledged after %s", o.timeout)
			}
		}
	}
	total := o.rounds * perRound
	d.out.summary(demoSummary{Nodes: o.nodes, Rounds: o.rounds, Exchanges: total, OK: len(durations),
		Failed: total - len(durations), Acks: acks, P50: percentile(durations, 50), P99: percentile(durations, 99),
		Elapsed: d.since()})
	if failed > 0 {
		return fmt.Errorf("demo: %d of %d exchanges failed", failed, total)
	}
	return nil
}

// startNodes starts n handlers that allowlist each other; each will answer
// the given number of requests.
func (d *demo) startNodes(n, answers int, log *zap.Logger) error {
	keys := make([]p2p.Config, n)
	entries := make([]allowlist.Entry, n)
	for i := range keys {
		k, err := p2p.GenerateKey(p2p.Secp256k1)
		if err != nil {
			return err
		}
		id, _ := peer.IDFromPrivateKey(k)
		keys[i] = p2p.Config{Key: k}
		entries[i] = allowlist.Entry{ID: id, Name: fmt.Sprintf("node-%d", i+1)}
	}
	list, err := allowlist.New(entries...)
	if err != nil {
		return err
	}
	for i, k := range keys {
		n := &demoNode{name: entries[i].Name, dialed: make(chan handler.Outcome, 64), answered: make(chan handler.Outcome, answers)}
		k.Allowlist = list
		n.h, err = handler.NewWithConfig(handler.Config{Node: k, Logger: log.Named(n.name)})
		if err != nil {
			return handlerErr(err)
		}
		d.nodes = append(d.nodes, n)
		d.byID[n.h.PeerID()] = n
		d.serves.Go(func() { d.serve(n) })
	}
	return nil
}

// serve is a node's application: it answers every request, and reports
// replies and outcomes, until the handler closes.
func (d *demo) serve(n *demoNode) {
	events, outcomes := n.h.Events(), n.h.Outcomes()
	// The handler gives a request's Reply before its Outcome, but on
	// another channel, and a select takes whichever is ready: an Outcome
	// whose reply is still on its way waits for it, so that the
	// transcript never shows an exchange done before its reply.
	var order replyOrder
	dialed := func(o handler.Outcome) {
		d.out.outcome(n.name, d.name(o.Peer), o)
		n.dialed <- o
	}
	for events != nil || outcomes != nil {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			switch e := ev.(type) {
			case *handler.Request:
				from := d.name(e.From)
				d.out.message("request", from, n.name, string(e.Data))
				reply := strings.Replace(string(e.Data), "nonce commitment", "partial signature", 1)
				reply = strings.Replace(reply, "from "+from, "from "+n.name, 1)
				_ = n.h.Response(e.From, e.Exchange, []byte(reply))
			case *handler.Reply:
				d.out.message("reply", d.name(e.From), n.name, string(e.Data))
				if o, ok := order.replied(e.Exchange); ok {
					dialed(o)
				}
			}
		case ev, ok := <-outcomes:
			if !ok {
				outcomes = nil
				continue
			}
			o, ok := ev.(*handler.Outcome)
			switch {
			case !ok:
			case o.Role != handler.Dialer:
				n.answered <- *o
			case o.Kind == handler.KindRequest && o.OK && !order.ended(*o):
				// Printed once its reply is.
			default:
				dialed(*o)
			}
		}
	}
}

// runPhase has each node i of the phase ask node to[i], all at once, and
// waits for every outcome.
func (d *demo) runPhase(ctx context.Context, round int, to []int) ([]handler.Outcome, error) {
	asked := 0
	for i, j := range to {
		if j < 0 {
			continue
		}
		from, dst := d.nodes[i], d.nodes[j]
		msg := fmt.Sprintf("nonce commitment #%d from %s", round, from.name)
		if _, err := from.h.Request(dst.h.PeerID(), dst.h.Addrs()[0], []byte(msg)); err != nil {
			return nil, err
		}
		asked++
	}
	var res []handler.Outcome
	for i, j := range to {
		if j < 0 {
			continue
		}
		select {
		case o := <-d.nodes[i].dialed:
			res = append(res, o)
		case <-ctx.Done():
			return res, errors.New("demo: exchanges still running after the --timeout")
		}
	}
	return res, nil
}

// phases splits one round, in which every node asks every other one,
// into phases in which no two nodes ask each other at once (they would
// dial each other at the same moment). In phase r node i asks node
// (i+r) mod n; with an even n the middle phase pairs nodes both ways and is
// split in two. An entry of -1 means the node asks nobody in that phase.
func phases(n int) [][]int {
	var out [][]int
	for r := 1; r < n; r++ {
		to := make([]int, n)
		for i := range to {
			to[i] = (i + r) % n
		}
		if 2*r != n {
			out = append(out, to)
			continue
		}
		first, second := slices.Repeat([]int{-1}, n), slices.Repeat([]int{-1}, n)
		for i, j := range to {
			if i < j {
				first[i] = j
			} else {
				second[i] = j
			}
		}
		out = append(out, first, second)
	}
	return out
}

func (d *demo) name(p peer.ID) string {
	if n := d.byID[p]; n != nil {
		return n.name
	}
	return p.String()
}

func (d *demo) since() time.Duration { return time.Duration(time.Now().UnixNano() - d.start.Load()) }

// close stops every node and its goroutine.
func (d *demo) close() {
	var wg sync.WaitGroup
	for _, n := range d.nodes {
		wg.Go(func() { _ = n.h.Close() })
	}
	wg.Wait()
	d.serves.Wait()
}

// percentile is the p-th percentile of ds (nearest rank), 0 for none.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}
