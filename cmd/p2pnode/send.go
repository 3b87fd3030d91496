package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/bitvmx/go-bitvmx-p2p/dht"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

const sendLong = `send runs one exchange and exits: it asks the running node (p2pnode run) to
send TEXT to the peer --to as a request, waits for the reply, prints it and
exits 0. Any failure (dial, refusal, no reply within --timeout) is one line
on stderr and exit status 1. "request" is another name for send.

The node is found through its control socket (see the end of this help).
send needs no key or allowlist of its own: the
exchange is the node's, printed by the node like one from its stdin, kept
in its store and resumed after a restart. If send stops waiting (--timeout,
Ctrl-C or SIGTERM: one line, exit status 1), the exchange goes on in the
node; at --timeout the line names it ("exchange <exchange> goes on in the
node"), to find it later in the node's events or its outbox, and with
--json send also prints {"event":"running","peer":"<id>","exchange":"<exchange>","waited_ms":...}.
If the node goes away first (killed, or crashed), send says so (exit
status 1): a node with a store resumes the exchange at its next start, if
it had taken it (p2pnode outbox list shows it).

The peer is reached at --addr, or at the address the node knows for it
(connected, addressed before, or found in its DHT). --addr adds to what
the node knows, it does not replace it: a peer the node can reach already
is reached whatever --addr says. With --no-reply the
text goes as a one-way message and send waits for its acknowledgment
instead of a reply.

It prints the reply's payload (or "acknowledged by PEER in DURATION"), or
with --json one object:

  {"event":"reply","from":"<id>","exchange":"<exchange>","data":"<text>","data_b64":"<base64>","duration_ms":7.2}
  {"event":"acked","peer":"<id>","exchange":"<exchange>","attempts":1,"duration_ms":6.3}   --no-reply

--standalone starts a node of its own instead, for this one exchange, with
--key and --allowlist (or a --config file: its key, allowlist, limits,
handler and DHT settings; not its listen addresses, send listens on a free
loopback port unless --listen says otherwise). Peers must allowlist that
key. With --membership, it admits the members of the version run would
start from: the newer of the file given and the one saved in the data
directory (data_dir, or the default of the key), which it only reads. Standalone, send keeps no store: if it is stopped first (--timeout,
Ctrl-C), nothing resumes the exchange. With --dht, it joins the DHT through the --bootstrap
peers only to look the peer up, and publishes no record of its own; prefer
a key of its own to a running node's: peers would see two hosts with one
identity. Standalone, send takes only its reply: a request or message a
peer sends to its key meanwhile is refused busy, and the peer keeps it and
resends it (one of its attempts).

` + controlLong

// sendOptions are the flags of send that are not configuration.
type sendOptions struct {
	to, addr, dataB64 string
	timeout           time.Duration
	oneWay            bool
}

// newSendCmd builds "send".
func newSendCmd(a *app) *cobra.Command {
	var (
		configPath string
		flags      runConfig
		o          sendOptions
		t          nodeTarget
		standalone bool
	)
	cmd := &cobra.Command{
		Use:     "send --to PEER [--addr MULTIADDR] [TEXT]",
		Aliases: []string{"request"},
		Short:   "Send one request through the running node, print its reply and exit",
		Long:    sendLong,
		Example: `  p2pnode send --to 16Uiu2HAm... --addr /ip4/10.0.0.2/tcp/4001 "hello"
  p2pnode request --data-dir /var/lib/p2pnode --addr /ip4/10.0.0.2/tcp/4001/p2p/16Uiu2HAm... --json "hello"
  p2pnode send --config /etc/p2pnode/p2pnode.yaml --to 16Uiu2HAm... --no-reply "note"
  p2pnode send --standalone --key me.key --allowlist allowlist.yaml --addr /ip4/10.0.0.2/tcp/4001/p2p/16Uiu2HAm... "hello"
  p2pnode send --standalone --key me.key --allowlist allowlist.yaml --dht --bootstrap /ip4/10.0.0.1/tcp/4001/p2p/16Uiu2HAm... --to 16Uiu2HAm... "hello"`,
		Args: checkArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !standalone {
				t.config, t.key = configPath, flags.Key
				return sendThroughNode(a, cmd.Flags(), t, o, flags.JSON, args)
			}
			if t.api != "" || t.dataDir != "" {
				return usageErrorf("--api and --data-dir name a running node: without --standalone, send uses it")
			}
			cfg, err := clientConfig(configPath, cmd.Flags(), false)
			if err != nil {
				return err
			}
			to, addr, err := o.target()
			if err != nil {
				return usageError{err}
			}
			if cfg.DHT.Enabled && len(cfg.DHT.Bootstrap) == 0 {
				return usageErrorf("--dht needs --bootstrap: a DHT member to join through")
			}
			if addr == nil && !cfg.DHT.Enabled {
				return usageErrorf("no address for %s: give --addr, or --dht to find it", to)
			}
			data, err := o.payload(args)
			if err != nil {
				return usageError{err}
			}
			if o.timeout <= 0 {
				return usageErrorf("--timeout must be positive (got %s)", o.timeout)
			}
			return runSend(a, cfg, o, to, addr, data)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&configPath, "config", "", "the running node's configuration `FILE`; with --standalone, key, allowlist and settings")
	bindClientFlags(fs, &flags)
	// send seals no record of its own: it only reads the members'.
	fs.Lookup("membership").Usage = "membership document `FILE` (docs/membership.md), instead of --allowlist: admit its members and, with --dht, read the DHT records sealed to them"
	fs.BoolVar(&standalone, "standalone", false, "send from a node of its own (--key, --allowlist), not through the running node")
	fs.StringVar(&t.api, "api", "", "the running node's control `SOCKET` (default control.sock in its data directory)")
	fs.StringVar(&t.dataDir, "data-dir", "", "the running node's data `DIR`")
	bindRetryFlags(fs, &flags.Handler)
	fs.BoolVar(&flags.DHT.Enabled, "dht", false, "find the peer in the DHT (needs --bootstrap)")
	fs.StringVar(&o.to, "to", "", "`PEER` ID to send to (may be left out when --addr ends in /p2p/<id>)")
	fs.StringVar(&o.addr, "addr", "", "the peer's `MULTIADDR`")
	fs.StringVar(&o.dataB64, "data-b64", "", "send these `BASE64` bytes instead of TEXT")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up after this long, joining the DHT included")
	fs.BoolVar(&o.oneWay, "no-reply", false, "send a one-way message and wait for its acknowledgment, not for a reply")
	return cmd
}

// bindClientFlags defines the flags of the one-shot commands that start a
// node of their own (send, find).
func bindClientFlags(fs *pflag.FlagSet, c *runConfig) {
	bindIdentityFlags(fs, c)
	bindBootstrapFlag(fs, &c.DHT, ": the DHT members to join through")
	fs.BoolVar(&c.JSON, "json", c.JSON, "print the result as one JSON object")
}

// clientConfig builds the configuration of a one-shot command from its
// --config file and flags. withDHT turns the DHT on whatever they say.
func clientConfig(path string, changed *pflag.FlagSet, withDHT bool) (runConfig, error) {
	var cfg runConfig
	if path != "" {
		var err error
		if cfg, err = loadConfigFile(path); err != nil {
			return cfg, err
		}
		cfg.Listen = nil // the running node's: they would be in use
	}
	if err := overlayFlags(&cfg, changed); err != nil {
		return cfg, usageError{err}
	}
	cfg.DHT.Enabled = cfg.DHT.Enabled || withDHT
	return cfg, cfg.validate()
}

// target decodes --to and --addr.
func (o *sendOptions) target() (peer.ID, ma.Multiaddr, error) {
	var (
		to   peer.ID
		addr ma.Multiaddr
		err  error
	)
	if o.to != "" {
		if to, err = peer.Decode(o.to); err != nil {
			return "", nil, fmt.Errorf("--to %q is not a peer ID", o.to)
		}
	}
	if o.addr != "" {
		if addr, err = ma.NewMultiaddr(o.addr); err != nil {
			return "", nil, fmt.Errorf("--addr %q is not a multiaddr: %v", o.addr, err)
		}
		if _, id := peer.SplitAddr(addr); id != "" {
			if to == "" {
				to = id
			} else if id != to {
				return "", nil, fmt.Errorf("--addr %s belongs to peer %s, not %s", o.addr, id, to)
			}
		}
	}
	if to == "" {
		return "", nil, errors.New("no peer: give --to PEER (or an --addr ending in /p2p/<id>)")
	}
	return to, addr, nil
}

// payload is TEXT or the --data-b64 bytes: exactly one of them.
func (o *sendOptions) payload(args []string) ([]byte, error) {
	switch {
	case len(args) == 1 && o.dataB64 != "":
		return nil, errors.New("give TEXT or --data-b64, not both")
	case len(args) == 1:
		return []byte(args[0]), nil
	case o.dataB64 != "":
		b, err := base64.StdEncoding.DecodeString(o.dataB64)
		if err != nil {
			return nil, fmt.Errorf("--data-b64 is not base64: %v", err)
		}
		return b, nil
	}
	return nil, errors.New("nothing to send: give TEXT or --data-b64")
}

// runSend starts a handler, runs the one exchange and prints its result.
func runSend(a *app, cfg runConfig, o sendOptions, to peer.ID, addr ma.Multiaddr, data []byte) error {
	log, err := newLogger(cfg.Log, a.err)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	routeLibp2pLogs(log)
	pcfg, doc, err := loadToolConfig(&cfg, log)
	if err != nil {
		return err
	}
	hcfg := standaloneHandlerConfig(cfg, pcfg, o.timeout)
	hcfg.Logger = log
	// The peer's closing of the connection, watched from the handler's
	// loop: see the wait after the exchange below.
	hung := make(chan struct{}, 1)
	hcfg.Observe = func(ev p2p.Event) {
		if d, ok := ev.(p2p.Disconnected); ok && d.Peer == to {
			select {
			case hung <- struct{}{}:
			default:
			}
		}
	}
	h, err := handler.NewWithConfig(hcfg)
	if err != nil {
		return handlerErr(err)
	}
	var d *dht.DHT
	defer func() {
		if d != nil {
			_ = d.Close()
		}
		// Whatever is still in flight (after a timeout) fails at once.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
	}()

	intr, stop := interruptible(context.Background())
	defer stop()
	ctx, cancel := context.WithTimeout(intr, o.timeout)
	defer cancel()
	if cfg.DHT.Enabled {
		if d, err = joinDHT(ctx, h.Node(), cfg, doc, log, o.timeout); err != nil {
			return err
		}
		if err := h.SetResolver(d); err != nil {
			return err
		}
	}

	start := h.Request
	if o.oneWay {
		start = h.Send
	}
	id, err := start(to, addr, data)
	if err != nil {
		return err
	}
	reply, out, err := awaitOutcome(ctx, intr.Done(), h.Events(), h.Outcomes(), id)
	switch {
	case err != nil && intr.Err() != nil:
		return fmt.Errorf("send to %s: interrupted; the exchange is abandoned with send's own node", to)
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("send to %s: no answer within %s", to, o.timeout)
	case err != nil:
		return fmt.Errorf("send to %s: %w", to, err)
	}
	if !out.OK {
		return outcomeError(to, out)
	}
	// Our node acknowledges the reply right after handing it over; closing
	// at once could lose that ack and fail the peer's side of a completed
	// exchange. The peer closes the connection once it has the ack: wait
	// for that, or for the handler's own linger.
	if !o.oneWay {
		select {
		case <-hung:
		case <-time.After(2 * handler.DefaultLinger):
		}
	}
	return printSendResult(a, cfg.JSON, to, reply, out)
}

// standaloneHandlerConfig is the handler configuration of send
// --standalone. Its handler takes only the reply to its own request
// (handler.Config.RepliesOnly): its key may be a running node's, whose
// peers would write that node's requests and messages on send's
// connection, and send would ack them OK and hand them to no one. Refused
// busy, they stay with their senders, who resend later.
func standaloneHandlerConfig(cfg runConfig, pcfg p2p.Config, timeout time.Duration) handler.Config {
	hcfg := cfg.Handler.handlerConfig(pcfg)
	hcfg.RepliesOnly = true
	if hcfg.ReplyTimeout <= 0 {
		hcfg.ReplyTimeout = timeout
	}
	return hcfg
}

// outcomeError is the one line a failed exchange ends send with. A peer
// that closed the connection at the handshake is named as such: the rest
// (dial_failed after 1 attempt) would hide what the operator has to do.
func outcomeError(to peer.ID, out handler.Outcome) error {
	if ce, ok := errors.AsType[*p2p.ClosedAtHandshakeError](out.Err); ok {
		if ce.Before {
			return fmt.Errorf("send to %s: %w (%s after %s)", to, ce, out.Reason, plural(out.Attempts, "attempt"))
		}
		return fmt.Errorf("send to %s: %w", to, ce)
	}
	return fmt.Errorf("send to %s failed: %s after %s (%s)", to, out.Reason, plural(out.Attempts, "attempt"), errText(out.Err))
}

// awaitOutcome waits for exchange id's outcome and, for a request that
// succeeded, its reply. The reply is handed out before the outcome, but on
// events, where other events may come before it, and the outcome on
// outcomes: either may be read first. Once either is in, only interrupt
// (Ctrl-C) still ends the wait, with ctx's error: the other is already
// queued (an OK request's outcome after its reply on events; a reply comes
// only with its OK outcome, handed out at once), and a deadline that
// passed between the two reads must not turn an answered request into "no
// answer".
func awaitOutcome(ctx context.Context, interrupt <-chan struct{}, events, outcomes <-chan handler.Event, id handler.ExchangeID) (*handler.Reply, handler.Outcome, error) {
	var (
		reply *handler.Reply
		out   *handler.Outcome
		done  = ctx.Done()
	)
	for out == nil || out.OK && out.Kind == handler.KindRequest && reply == nil {
		select {
		case ev, ok := <-events:
			if !ok && out != nil && out.Reply != nil {
				// Closed without the Reply, which Close may drop: the
				// outcome carries it.
				return out.Reply, *out, nil
			}
			if !ok {
				return nil, handler.Outcome{}, handler.ErrClosed
			}
			if r, ok := ev.(*handler.Reply); ok && r.Exchange == id {
				reply, done = r, interrupt // its outcome is on its way
			}
		case ev, ok := <-outcomes:
			if !ok {
				return nil, handler.Outcome{}, handler.ErrClosed
			}
			if o, ok := ev.(*handler.Outcome); ok && o.Exchange == id {
				out, outcomes, done = o, nil, interrupt // only its reply is still to come
			}
		case <-done:
			return nil, handler.Outcome{}, ctx.Err()
		}
	}
	return reply, *out, nil
}

// printSendResult prints the reply (or the acknowledgment of a one-way
// message).
func printSendResult(a *app, asJSON bool, to peer.ID, reply *handler.Reply, o handler.Outcome) error {
	if asJSON {
		enc := json.NewEncoder(a.out)
		enc.SetEscapeHTML(false)
		if reply == nil {
			return enc.Encode(struct {
				Event    string  `json:"event"`
				Peer     string  `json:"peer"`
				Exchange string  `json:"exchange"`
				Attempts int     `json:"attempts"`
				Duration float64 `json:"duration_ms"`
			}{"acked", to.String(), o.Exchange.String(), o.Attempts, millis(o.Duration)})
		}
		text, b64 := payloadJSON(reply.Data)
		j := struct {
			jsonReply
			Duration float64 `json:"duration_ms"`
		}{jsonReply{Event: "reply", From: reply.From.String(), Exchange: reply.Exchange.String(), Data: text, DataB64: b64}, millis(o.Duration)}
		return enc.Encode(j)
	}
	if reply == nil {
		_, err := fmt.Fprintf(a.out, "acknowledged by %s in %s\n", to, o.Duration.Round(10*time.Microsecond))
		return err
	}
	_, err := fmt.Fprintln(a.out, payloadText(reply.Data))
	return err
}

// interruptible is ctx ended also by SIGINT or SIGTERM (Ctrl-C), so that a
// command waiting on the network stops waiting with its one line and exit
// status 1, saying what became of its work, rather than being killed by
// the signal in silence. stop restores the signals' default.
func interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}
