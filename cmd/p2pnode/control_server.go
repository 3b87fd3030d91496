package main

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// The node side of the control API: run serves it on a unix socket (by
// default control.sock in the data directory) for the commands that use
// the running node (status, peers, send, allowlist reload, outbox list and
// drop, deadletters list, retry and drop, membership submit).
// control_node.go, control_store.go and control_membership.go answer the
// calls.

// apiOff as the api setting turns the control socket off.
const apiOff = "off"

// bindAPIFlag defines run's --api.
func bindAPIFlag(fs *pflag.FlagSet, c *runConfig) {
	fs.StringVar(&c.API, "api", c.API,
		"control socket `PATH` for status, peers, send... (default control.sock in the data directory; off: none)")
}

// controlSocket is the control socket of a node with these settings and
// data directory ("" when ephemeral): "" when it has none.
func (c *runConfig) controlSocket(dataDir string) string {
	switch {
	case c.API == apiOff:
		return ""
	case c.API != "":
		return absPath(c.API)
	case dataDir != "":
		return control.SocketPath(dataDir)
	}
	return ""
}

// nodeControl is the runner's side of the control API: it implements
// control.Node. Its methods run on the control server's goroutines; they
// read the runner's fields set before the server started (handler, node,
// store, allowlist, DHT) and use only their concurrency-safe methods.
type nodeControl struct {
	r       *runner
	started time.Time
	// st is the runner's store (nil: ephemeral), copied at start: the
	// runner clears its own field when it closes the store.
	st *store.Store
	// tagPrefix makes the tags of this process's exchanges unique: an
	// exchange resumed from an earlier run never matches a waiter.
	tagPrefix string
	next      atomic.Uint64
	waiters   waiters
}

// opsState is what the runner keeps for its operator interfaces: the
// control API and the health endpoints.
type opsState struct {
	// sock is the control socket, bound before the handler starts and
	// served by startOps; nil: no control socket.
	sock     *control.Socket
	ctl      *nodeControl // nil: no control socket
	stopping atomic.Bool  // shutdown began: not ready, no new control calls
	// closed: the handler has closed and the control socket is closing:
	// what a waiting call's exchange has not ended by now, it never will
	// in this process.
	closed atomic.Bool
}

// bindControl binds the control socket, if the node has one, before the
// handler starts: a socket another node serves (the same --api with
// another data directory) stops run before its handler resumes the
// exchanges of its store or prints anything. The caller defers
// unbindControl.
func (r *runner) bindControl() error {
	path := r.cfg.controlSocket(r.dataDir)
	if path == "" {
		return nil
	}
	s, err := control.Bind(path)
	if err != nil {
		return err
	}
	r.ops.sock = s
	return nil
}

// unbindControl removes the control socket if startOps did not serve it
// (run failed before): once served, the server's stop removes it.
func (r *runner) unbindControl() {
	if r.ops.sock != nil {
		r.ops.sock.Close()
	}
}

// startOps serves the control API on the socket bindControl bound, names
// it in the listening event, and makes /readyz answer from r.ready. It
// returns the function that stops them (idempotent). It runs after the
// store is open and before the listening event is printed: a script that
// saw the event can use the socket.
func (r *runner) startOps(m *metricsServer, listening *listeningEvent) (stop func(), err error) {
	stop = func() { r.ops.stopping.Store(true) }
	if sock := r.ops.sock; sock != nil {
		now := time.Now()
		c := &nodeControl{r: r, st: r.store, started: now, tagPrefix: fmt.Sprintf("api-%x-", now.UnixNano())}
		srv, err := sock.Serve(c, r.log, control.WithMaxRequestSize(maxControlRequest(r.node.Config().MaxMessageSize)))
		if err != nil {
			return nil, err
		}
		r.ops.ctl, listening.API = c, sock.Path()
		r.log.Info("control API", zap.String("socket", sock.Path()))
		stop = func() {
			r.ops.stopping.Store(true)
			r.ops.closed.Store(true)
			srv.Close()
		}
	}
	if m != nil {
		m.setReady(r.ready)
	}
	return stop, nil
}

// maxControlRequest bounds a control request of a node whose largest
// message is maxMessage bytes: an Exchange carries one, a membership
// submission a document; 64 KiB is room for the other fields.
func maxControlRequest(maxMessage int) int {
	return max(control.DefaultMaxRequestSize, maxMessage+64<<10, membership.MaxDocumentSize+64<<10)
}

// ready reports whether the node is ready for work (/readyz): it
// listens (ready is installed just before the listening event), its store
// is open (it is until shutdown) and has not failed, and with --dht its
// routing table has a peer.
func (r *runner) ready() error {
	// The store first: a node stopping because it failed says why.
	if r.life != nil {
		if err := r.life.Err(); err != nil {
			return err
		}
	}
	if r.ops.stopping.Load() {
		return control.ErrStopping
	}
	if r.dht != nil && len(r.dht.Peers()) == 0 {
		// Why the node could not join (a bootstrap peer down, or refusing
		// this node: its allowlist, the IP binding): what the operator
		// can act on.
		if why := r.dht.BootstrapError(); why != nil {
			return fmt.Errorf("dht: the routing table is empty; the last bootstrap try: %w", why)
		}
		return errors.New("dht: the routing table is empty")
	}
	return nil
}

// waiters are the control API's exchanges waiting for their reply and
// outcome, by tag. The run loop hands them over as it prints them.
type waiters struct {
	mu sync.Mutex
	m  map[string]*waiter
}

// waiter receives one exchange's reply (requests) and outcome. Both
// channels have room for the one value each gets: the run loop never
// blocks on a waiter.
type waiter struct {
	reply   chan handler.Reply
	outcome chan handler.Outcome
}

func (ws *waiters) add(tag string) *waiter {
	w := &waiter{reply: make(chan handler.Reply, 1), outcome: make(chan handler.Outcome, 1)}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.m == nil {
		ws.m = make(map[string]*waiter)
	}
	ws.m[tag] = w
	return w
}

func (ws *waiters) remove(tag string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	delete(ws.m, tag)
}

func (ws *waiters) get(tag string) *waiter {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.m[tag]
}

// replied hands a reply to the control call waiting for it, if any. The
// run loop calls it; a nil c (no control API) does nothing.
func (c *nodeControl) replied(e handler.Reply) {
	if c == nil || e.Tag == "" {
		return
	}
	if w := c.waiters.get(e.Tag); w != nil {
		select {
		case w.reply <- e:
		default:
		}
	}
}

// ended hands an outcome to the control call waiting for it, if any.
func (c *nodeControl) ended(e handler.Outcome) {
	if c == nil || e.Tag == "" {
		return
	}
	if w := c.waiters.get(e.Tag); w != nil {
		select {
		case w.outcome <- e:
		default:
		}
	}
}

// errStopping wraps a handler's ErrClosed as the control API's ErrStopping.
func errStopping(err error) error {
	if errors.Is(err, handler.ErrClosed) {
		return fmt.Errorf("%w: %v", control.ErrStopping, err)
	}
	return err
}
