package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/dht"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

const runLong = `run starts a node and prints one line per event on stdout until SIGINT or
SIGTERM, or until its command stream on stdin ends; then it stops cleanly
and exits 0. Logs go to stderr.

Stdin is a command stream when it is a pipe, a FIFO, a socket, a terminal
or a regular file: its end (EOF, or Ctrl-D) stops the node, so that a
script piping commands in stops it by closing the pipe. Any other stdin,
such as /dev/null (systemd, docker without -i, nohup), or --no-stdin,
means no commands: the node runs until SIGINT or SIGTERM. That is the
service form:

  p2pnode run --config /etc/p2pnode/p2pnode.yaml </dev/null

Every message goes through the exchange handler: a send is a one-way
message, acknowledged, resent when the peer is busy or the connection
drops, and each exchange dials its own connection and closes it when done
(--keep-connection keeps it). Peers must run the handler too (p2pnode run
does).

The node is durable: it keeps a store in its data directory (--data-dir,
default $XDG_STATE_HOME/p2pnode/<peer ID> or ~/.local/state/p2pnode/<peer
ID>). A send or request is on disk before the next stdin line is read;
a request or message received is on disk before its sender is told OK, and
stays there until it is answered (respond, --auto-reply) or its reply
timeout passes, or, for a message, until it is printed. After a crash or a stop, the next run on the same
directory resumes the exchanges this node had started (their exchange
events say "resumed", and keep their stdin "id") and prints again what it had received
and not handled ("redelivered"). A send or request that fails for good is
kept in the dead letters ("dead_lettered"): see p2pnode deadletters --help,
and p2pnode outbox --help for the exchanges waiting to resume. One node per
directory: a second run on it fails, and so does a run with another key
than the one whose store it holds. --ephemeral runs without a store, and
a restart forgets everything in flight.

Commands are read from stdin, one JSON object per line:

  {"cmd":"dial","peer":"<id>","addr":"<multiaddr>"}
  {"cmd":"send","peer":"<id>","addr":"<multiaddr>","data":"<text>"}
  {"cmd":"send","peer":"<id>","data_b64":"<base64>","id":7}
  {"cmd":"request","peer":"<id>","addr":"<multiaddr>","data":"<text>","id":8}
  {"cmd":"respond","peer":"<id>","exchange":"<exchange>","data":"<text>"}
  {"cmd":"disconnect","peer":"<id>"}

Except in dial, which needs it, "addr" is optional for a connected peer, a
peer addressed before, or with --dht; "peer" may be left out when "addr"
ends in /p2p/<id>. A send gets exactly one status event carrying its "id"
(numbered by p2pnode when the line has none), and an exchange event. An
"id" is positive: 0 is a bad line, as 0 stands for no stdin id (an exchange
started through the control API: its status event says "id":0, its reply
and exchange events have no "id"), and at most 9223372036854775807
(2^63-1). A line must be UTF-8 (bytes that are not go in "data_b64"). A
request gets a reply event and an exchange event carrying its "id". A
request received is printed as a request event: answer it with respond, or
start run with --auto-reply echo. A reply a full store refuses
(--max-store-size) gets an error event: a respond can be sent again;
--auto-reply tries again by itself until the request's reply timeout
(counted from its arrival) runs out. A request refused at once (a peer not
allowlisted, a payload too large) gets neither: its error event carries its
"id". A bad line gets an error event (carrying the line's "id", if it names
a valid one) and the node carries on. With a store, a send or request still
running when the node stops gets its events from the next run on the
directory, which resumes it.

Events, with --json (one object per line, "event" first):

  {"event":"listening","peer":"<id>","addrs":["/ip4/.../tcp/N/p2p/<id>"],"data_dir":"<dir>"}   always first
  {"event":"data","from":"<id>","data":"<text>","data_b64":"<base64>"}     "data" only if UTF-8
  {"event":"status","peer":"<id>","id":7,"ok":true,"reason":"ok"}
  {"event":"request","from":"<id>","exchange":"<exchange>","data":"<text>","data_b64":"<base64>"}
  {"event":"reply","from":"<id>","exchange":"<exchange>","id":8,"data":"<text>","data_b64":"<base64>"}
  {"event":"exchange","peer":"<id>","exchange":"<exchange>","id":8,"kind":"request","role":"dialer",
   "ok":false,"reason":"reply_timeout","stage":"await_reply","error":"...","attempts":1,"duration_ms":30001.2,
   "resumed":true,"dead_lettered":true}
  {"event":"connected","peer":"<id>","addr":"<multiaddr>","direction":"inbound"}
  {"event":"disconnected","peer":"<id>"}
  {"event":"connection_limit","peer":"<id>","reason":"malformed_message","until":"<RFC 3339>"}
  {"event":"dropped","peer":"<id>","id":9,"count":3}
  {"event":"refused","peer":"<id>","ip":"<ip>","reason":"unknown_peer","count":1}   an inbound connection the allowlist refused
  {"event":"error","peer":"<id>","error":"<message>"}
  {"event":"reloaded","kind":"allowlist","file":"<absolute path>","count":4}
  {"event":"membership_applied","version":2,"hash":"<sha256>","from":"<id>","added":["<id>"],"removed":["<id>"]}   no "from": membership submit
  {"event":"membership_rejected","from":"<id>","version":2,"reason":"threshold","charged":true,"error":"..."}
  {"event":"membership_behind","peer":"<id>","peer_version":5,"version":2}
  {"event":"membership_conflict","peer":"<id>","version":2,"hash":"<sha256>","peer_hash":"<sha256>",
   "peer_document_file":"<data dir>/forks/fork-v2-<id>-<sha256>.pb"}   or "peer_document_not_kept":"<why>"
  {"event":"dht_ready","peers":1}                                           with --dht
  {"event":"published","addrs":["/ip4/..."],"seq":N,"expires":"<RFC 3339>"}  with --dht

"membership_conflict" is printed once the peer sent its document and it
verified against the version before (a fork signed by a threshold of the
members), once per peer, version and document. The peer's document, the
evidence that a threshold of members signed twice, is kept in the data
directory's forks/ (at most 64 files; past them a new one is not kept, and
"peer_document_not_kept" says why, as it does on a node with --ephemeral);
with this node's version of the same number (membership.pb in the data
directory while it is in force: copy it aside) it proves the fork. A fork
shown that cannot be
checked (no version before it kept, or histories split earlier) is a
"membership_rejected" with reason "fork_unchecked", not charged;
"membership_behind" at most once a minute per peer (its version is not
signed).

"published" is printed once, for the node's first record; the DHT then
republishes by itself (on a new address, a membership change, before the
record expires) without an event: status shows when it last did.

A peer the allowlist names has its name beside its ID: "peer_name" after
"peer", "from_name" after "from" (in text: ID (name)). A refused event
stands for "count" refusals of one peer, IP and reason: the first at once,
the rest at most every 10 seconds; "peer" is left out for a connection
refused before its handshake (reason ip_not_allowlisted or ip_banned).
"data_dir" is left out with --ephemeral. A request or data event of
something the previous run received and never handled has
"redelivered":true; an exchange a previous run started has "resumed":true;
one that failed and is kept in the dead letters "dead_lettered":true. A
data event is printed before the message is marked handled: a crash in
between prints it again, redelivered, at the next start (at least once);
so does a print that fails (stdout on a full disk, a broken pipe).
A peer's connected event comes before the events of the messages its
connection carries; its disconnected event may come before the exchange
event of the exchange that connection ended with (they come from separate
queues), and a reply before or after its exchange event.

With --dht the node joins the experimental DHT through the --bootstrap
peers (none: it is a bootstrap node, which others join), publishes its
signed address record once it has a peer, and finds peers that stdin
commands give no address for.

SIGHUP reloads the allowlist and routes files (--watch also reloads them
when they change). A peer no longer allowlisted is disconnected at once. A
file that does not parse leaves the old list in force and prints an error
event naming the file and line.

A service's stdin is usually /dev/null, which run already reads as "no
commands"; --no-stdin says so whatever stdin is.

--membership FILE, instead of --allowlist, admits the members of a
membership document (docs/membership.md): version 1 as installed, or a
later one. The node exchanges versions with every member it connects to
(/bitvmx/membership/1.0.0), applies each valid newer one at once (new
members admitted, removed ones disconnected), saves it in the data
directory and starts from the newest saved one next time (not with
--ephemeral). The listening event then carries "membership_version";
membership_* events report what was applied or refused. Such a node has no
allowlist file: SIGHUP, --watch and p2pnode allowlist reload read the
routes file alone (allowlist reload fails without --routes: nothing to
reload), and p2pnode status shows the membership version in place of a
file.`

// newRunCmd builds "run".
func newRunCmd(a *app) *cobra.Command {
	var (
		configPath string
		// flags only gives cobra somewhere to store the values; the
		// configuration is built from the file and the changed flags.
		flags runConfig
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run a node: print its events, take commands on stdin",
		Long:  runLong,
		Example: `  p2pnode run --key node.key --listen /ip4/127.0.0.1/tcp/4001 --allowlist allowlist.yaml --json
  p2pnode run --key node.key --allowlist allowlist.yaml --data-dir /var/lib/p2pnode --no-stdin
  p2pnode run --key node.key --allowlist allowlist.yaml --ephemeral
  p2pnode run --config /etc/p2pnode/p2pnode.yaml --no-stdin --log-level info
  p2pnode run --key node.key --allowlist allowlist.yaml --auto-reply echo --dht --bootstrap /ip4/10.0.0.1/tcp/4001/p2p/16Uiu2HAm...
  echo '{"cmd":"send","addr":"/ip4/10.0.0.2/tcp/4001/p2p/16Uiu2HAm...","data":"hello"}' | p2pnode run --config p2pnode.yaml`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg runConfig
			if configPath != "" {
				var err error
				if cfg, err = loadConfigFile(configPath); err != nil {
					return err
				}
			}
			if err := overlayFlags(&cfg, cmd.Flags()); err != nil {
				return usageError{err}
			}
			if err := cfg.validate(); err != nil {
				return err
			}
			return runNode(a, cfg)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "YAML configuration `FILE` (see p2pnode config example); flags override it")
	bindRunFlags(cmd.Flags(), &flags)
	return cmd
}

// runner is one running node and everything "run" wires around it: the
// exchange handler (which owns the node), the DHT with --dht, the printer.
// Its loop is the only goroutine that reads the handler's channels and the
// command parser; run_handler.go holds what it does with them.
type runner struct {
	cfg    runConfig
	log    *zap.Logger
	out    *printer
	h      *handler.Handler
	node   *p2p.Node // the handler's
	dht    *dht.DHT  // nil without --dht
	list   *allowlist.List
	routes *allowlist.Routes // nil: no routing table
	parser commandParser
	seen   *observed // node events the handler shows through Config.Observe
	// store is the handler's store in dataDir; nil with --ephemeral.
	store *store.Store
	// life is the store as run watches and closes it (storeLife): set
	// with store, never changed; nil with --ephemeral.
	life  storeLife
	hooks runHooks
	// stage is how far the stop went (stageRunning...); failReported:
	// the store's failure was printed (run_stop.go).
	stage        atomic.Int32
	failReported atomic.Bool
	dataDir      string
	closing      bool            // shutting down: requests are no longer answered
	bgCtx        context.Context // cancelled at shutdown
	bgCancel     context.CancelFunc
	bg           sync.WaitGroup // the DHT watcher
	// With --membership: the version to start from, where it is saved
	// (empty with --ephemeral), the service, and its printer's end.
	memDoc  *membership.Document
	memPath string
	mem     *gossip.Service
	memDone chan struct{}
	// replies pairs each reply with its exchange's outcome, which the
	// handler hands out on another channel: run prints the reply first.
	replies replyOrder
	ops     opsState // control API and health (control_server.go)
	// unprintedReplies are the replies stdout refused, whose outcomes are
	// then not acknowledged; stdoutFailed: the failure was logged.
	unprintedReplies map[handler.ExchangeID]bool
	stdoutFailed     bool
	// waiting are the auto-replies a full store refused, retried by the
	// loop for up to replyTimeout, the handler's time to answer a
	// request (auto_reply.go).
	waiting      waitingReplies
	replyTimeout time.Duration
}

// runNode runs a node with cfg until stdin closes or a signal stops it.
func runNode(a *app, cfg runConfig) error {
	log, err := newLogger(cfg.Log, a.err)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	routeLibp2pLogs(log)

	// The node reads these files again on every reload and names them in
	// its events and log and in the control API's replies, which give an
	// absolute path: resolved once, they are named the same way in all.
	for _, p := range []*string{&cfg.Allowlist, &cfg.Routes} {
		if *p != "" {
			*p = absPath(*p)
		}
	}
	r := &runner{cfg: cfg, log: log, out: &printer{w: a.out, asJSON: cfg.JSON}, seen: newObserved(), hooks: a.hooks}
	r.bgCtx, r.bgCancel = context.WithCancel(context.Background())
	defer r.bgCancel()
	// The membership document's own checks are chooseMembership's.
	pcfg, err := loadNodeFiles(&cfg, log, membership.ReadFile)
	if err != nil {
		return err
	}
	r.list, r.routes = pcfg.Allowlist, pcfg.Routes
	r.out.names = r.peerName
	if r.list.Len() == 0 {
		log.Warn("the allowlist is empty: no peer can connect", zap.String("file", cfg.Allowlist))
	}
	// storeOwned: runNode closes the store when it returns.
	storeOwned := false
	if !cfg.Ephemeral {
		if err := r.openStore(pcfg); err != nil {
			return err
		}
		// After the handler has closed: every path that started it closes
		// it before returning (serve, once the node runs).
		storeOwned = true
		defer func() {
			if storeOwned {
				r.closeStore()
			}
		}()
	}
	if cfg.Membership != "" {
		if err := r.chooseMembership(); err != nil {
			return err
		}
	}
	// Before anything starts: see bindControl.
	if err := r.bindControl(); err != nil {
		return err
	}
	defer r.unbindControl()

	// Catch signals before anything is printed: a SIGHUP sent as soon as
	// the node says it listens must reload, not kill it (the default).
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// A write to a stdout whose reader is gone must fail, for the printer
	// to report (what it did not print is delivered again): by default Go
	// dies of SIGPIPE on it, even when the parent ignores SIGPIPE, with no
	// orderly shutdown, and systemd counts that death as a clean exit that
	// Restart=on-failure does not restart.
	signal.Ignore(syscall.SIGPIPE)

	var metrics *metricsServer
	if cfg.MetricsAddr != "" {
		if metrics, err = startMetrics(cfg.MetricsAddr, log); err != nil {
			return err
		}
		defer metrics.close()
	}

	hcfg := cfg.Handler.handlerConfig(pcfg)
	hcfg.Logger = log
	r.replyTimeout = hcfg.ReplyTimeout
	if r.replyTimeout <= 0 {
		r.replyTimeout = handler.DefaultReplyTimeout
	}
	hcfg.Observe = r.seen.observe
	if r.store != nil {
		hcfg.Store = r.store
		if r.hooks.handlerStore != nil {
			hcfg.Store = r.hooks.handlerStore(r.store)
		}
		// An outcome leaves the store once it is printed (handlerEvent):
		// killed in between, the next run prints it again, redelivered.
		hcfg.AckOutcomes = true
	}
	if metrics != nil {
		// One registry for all three layers: their names do not collide.
		hcfg.Node.Metrics, hcfg.Metrics = metrics.reg, metrics.reg
	}
	if r.h, err = handler.NewWithConfig(hcfg); err != nil {
		return handlerErr(err)
	}
	r.node = r.h.Node()
	// Membership before the DHT: the DHT seals its records to the members
	// of the version the service holds.
	if r.memDoc != nil {
		var reg prometheus.Registerer
		if metrics != nil {
			reg = metrics.reg
		}
		if err := r.startMembership(reg); err != nil {
			_ = r.h.Close()
			return err
		}
	}
	if cfg.DHT.Enabled {
		if err := r.startDHT(); err != nil {
			r.stopMembership()
			_ = r.h.Close()
			return err
		}
	}
	listening := listeningEvent{Peer: r.node.ID(), Addrs: r.node.Addrs(), DataDir: r.dataDir}
	if r.memDoc != nil {
		listening.Membership = r.mem.Current().Version()
	}
	if metrics != nil {
		listening.Metrics = metrics.addr
		if err := registerDHTMetrics(metrics.reg, r.dht); err != nil {
			_ = r.shutdown()
			return fmt.Errorf("metrics: %w", err)
		}
	}

	stopOps, err := r.startOps(metrics, &listening)
	if err != nil {
		_ = r.shutdown()
		return err
	}
	defer stopOps()

	// The listening event is the first line, whatever happens next: only
	// then may watchers print reloads.
	r.out.emit(listening)
	r.printMembership()
	stopWatch, err := r.watch()
	if err != nil {
		_ = r.shutdown()
		return err
	}
	r.watchDHT()
	if r.store != nil {
		log.Info("node started", zap.Stringer("peer", r.node.ID()), zap.Stringers("addrs", r.node.Addrs()),
			zap.String("data_dir", r.dataDir))
	} else {
		log.Info("node started", zap.Stringer("peer", r.node.ID()), zap.Stringers("addrs", r.node.Addrs()),
			zap.Bool("ephemeral", true))
	}

	var lines <-chan stdinLine
	if r.stdinMode(a.in) == stdinReadCommands {
		in := startStdinReader(a.in, maxStdinLine(r.node.Config().MaxMessageSize))
		defer in.stop()
		lines = in.lines
	}
	// The loop and the stop on a goroutine of their own: a stop that
	// waits on a failed store is cut short (awaitStop), and then that
	// goroutine is left to the process's exit.
	served := make(chan struct{})
	go r.serve(lines, sigs, stopWatch, stopOps, served)
	err, abandoned := r.awaitStop(served)
	if abandoned {
		// The store is not closed: it is what the stop waits for.
		storeOwned = false
	}
	return err
}

// handlerErr drops the "handler: " prefix from an error of the node the
// handler failed to start: "address already in use" is the node's news.
func handlerErr(err error) error {
	if u := errors.Unwrap(err); u != nil && strings.HasPrefix(err.Error(), "handler: p2p") {
		return u
	}
	return err
}

// maxStdinLine bounds a stdin line: the largest message, written as JSON
// text with every byte escaped (\u00XX, six bytes each), plus room for the
// other fields.
func maxStdinLine(maxMessage int) int {
	return 6*maxMessage + 64<<10
}
