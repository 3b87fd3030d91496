package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// exampleConfig is what "p2pnode config example" prints. It must stay a
// valid configuration (a test loads it) and should show every key.
const exampleConfig = `# p2pnode run configuration. Every key is optional here; key and allowlist
# must be given either here or with --key and --allowlist. A flag given on
# the command line overrides the key of the same name (--rate-burst for
# rate_limit.burst, --ack-timeout for timeouts.ack, and so on). A zero or
# missing value means the default shown. Relative paths are resolved
# against the directory of this file.

# Identity key file, mode 0600, written by "p2pnode keygen".
key: node.key

# TCP multiaddrs to listen on; several are allowed.
listen:
  - /ip4/0.0.0.0/tcp/4001
  - /ip6/::/tcp/4001

# Who may connect, and from where ("p2pnode allowlist --help").
allowlist: allowlist.yaml
# Or, instead of allowlist: a membership document (docs/membership.md), whose
# members decide who may connect, M of N of them signing each change. The
# node exchanges versions with the members and keeps the newest in its data
# directory. With the DHT on, its record is sealed: only the members read it.
# membership: membership-1.pb
# Optional routing table: which peer channel may reach which local channel.
# Without one, every allowlisted peer reaches every channel.
routes: ""
# Reload both files as soon as they change on disk. Without it they are
# reloaded on SIGHUP only.
watch: false

# The node's store, kept across restarts (docs/durability.md): the
# exchanges it started and has not finished (resumed at the next start),
# what it received and has not handled yet (delivered again), and the dead
# letters ("p2pnode outbox --help", "p2pnode deadletters --help"). Empty:
# $XDG_STATE_HOME/p2pnode/<peer ID>, or ~/.local/state/p2pnode/<peer ID>.
# One running node per directory.
data_dir: ""
# Most disk the store may use, in bytes, as du counts its directory (at
# least 16777216, 16 MiB; 0: 1073741824, 1 GiB). When it is full, new sends
# and requests fail and received messages are answered busy (their senders
# resend later) until exchanges end and free room. Compacting a full store
# may take up to as much again for a while: give the disk twice this.
max_store_size: 0
# The control socket "p2pnode status", "peers", "send" and the other
# commands use to reach this node (mode 0600: this user only). Empty:
# control.sock in the data directory; "off": none. An ephemeral node has
# one only when this names it.
api: ""
# Run without a store: a restart forgets every exchange in flight.
ephemeral: false

# Output: one JSON object per event instead of a line of text.
json: false
# Ignore stdin and run until SIGINT or SIGTERM. Without it, stdin is read
# as commands when it is a pipe, socket, terminal or file, and its end
# stops the node; any other stdin (/dev/null, as a service gets) means no
# commands already. As a service:
#   p2pnode run --config /etc/p2pnode/p2pnode.yaml </dev/null
# or, under systemd, ExecStart=/usr/local/bin/p2pnode run --config ... with
# the default StandardInput=null.
no_stdin: false
# Dial out from the listening port (for a multi-homed host whose peers
# bind its key to the IP it listens on).
reuse_port: false

# Misbehaviour budget per peer and per IP (failed handshakes, malformed or
# oversized messages, unanswered acks...): burst tokens, one earned back per
# refill; an empty bucket cuts the peer off for at least ban.
rate_limit:
  burst: 20
  refill: 1s
  ban: 30s

timeouts:
  ack: 10s    # a sent message waits this long for its ack
  read: 10s   # a frame, once started, must arrive within this
  write: 10s  # one write to a peer
  dial: 10s   # connecting to a peer and opening a stream
  handshake: 15s  # a peer's connection to us must be ready within this (raise with dial on slow machines)
  ack_delay: 2ms  # the ack of a request may wait this long to leave with its reply
  stream_idle: 1m # a message stream that carries nothing this long is closed (the connection stays)

max_message_size: 1048576   # bytes, sent or accepted
max_in_flight: 64           # sent messages per peer awaiting their ack
send_queue: 1024            # messages per peer waiting to be sent
streams_per_peer: 4         # inbound message streams one peer may hold open

buffers:
  receiver: 1024   # received messages and events waiting to be printed
  priority: 64     # alerts (dropped messages) waiting to be printed
  sender: 64       # stdin commands waiting for the node

# The exchange handler: every message goes out as part of an exchange (a
# request answered by a reply, or a one-way message), acknowledged, resent
# and timed out by the handler.
handler:
  # A request waits this long for its reply once acked; a request received
  # must be answered (stdin "respond") within it.
  reply_timeout: 30s
  # Sends of one message refused busy, lost with its connection, or not
  # delivered because the dial failed, before the exchange fails.
  max_attempts: 5
  # Wait before a resend: base, doubled per attempt, capped at max, half of
  # it random.
  backoff:
    base: 100ms
    max: 5s
  # Disconnect a peer after this long without an exchange; negative: never.
  idle_timeout: 30s
  # Keep a connection after its exchange for the next ones. By default each
  # exchange dials its own connection and closes it when done.
  keep_connection: false
  # After a reply, how long to wait for the responder to close the
  # connection before closing it ourselves.
  linger: 250ms
  # Exchanges run at once with one peer (1 to 1024; unlike the other
  # numbers, 0 is refused); the rest queue, in order. Raise it for a
  # protocol that runs several exchanges with one peer at once.
  max_concurrent_per_peer: 1
  # Answer every request by itself: "echo" replies with the request's
  # payload. Empty: requests are printed and answered from stdin.
  auto_reply: ""

# The experimental DHT: publish this node's signed address record, and find
# peers by ID alone (stdin commands and "p2pnode send --dht" then need no
# address). See docs/dht.md.
dht:
  enabled: false
  # Peers to join through, each a multiaddr ending in /p2p/<id> of an
  # allowlisted peer. None: this node is a bootstrap node, which others
  # join. For example:
  #   - /ip4/10.1.0.2/tcp/4001/p2p/16Uiu2HAm...
  bootstrap: []
  # Lifetime of this node's record: a node that has not republished for
  # this long counts as inactive.
  record_ttl: 1h
  # How often the record is republished; must be below record_ttl.
  refresh: 15m

` + relayExample + `
# Serve Prometheus metrics at http://HOST:PORT/metrics; empty is off.
metrics_addr: ""

# Logs go to stderr; stdout carries the events.
log:
  level: warn       # debug, info, warn or error
  format: console   # console or json
`

// newConfigCmd builds "config" and its subcommands.
func newConfigCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print an example configuration, or check a configuration file",
		Example: `  p2pnode config example > p2pnode.yaml
  p2pnode config check p2pnode.yaml`,
	}
	asGroup(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "example",
		Short: "Print a commented example configuration for p2pnode run --config",
		Example: `  p2pnode config example > p2pnode.yaml
  p2pnode run --config p2pnode.yaml`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprint(a.out, exampleConfig)
			return err
		},
	})
	var asJSON bool
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Check a configuration file as run would; print the settings it makes",
		Long: `check reads a configuration file as "p2pnode run --config" would and checks
everything run checks before it starts, with the same code: every value
(numbers, durations, listen addresses, metrics address, log settings, DHT
bootstrap peers), the key file (it must exist, hold a key and have mode
0600), the allowlist and routes files (they must parse) and the data
directory (if it exists, it must be a directory). With a membership
document, it checks the version run would start from (the newer of the
file given and the one saved in the data directory) and names it: an
expired version 1 is refused only when no newer version replaces it. The
listen addresses it reports are those run will use (the default with no
listen: key). It reports the first problem, with its line for a file that does not parse. It does not bind
any port and does not open the store, which a running node holds.`,
		Example: `  p2pnode config check p2pnode.yaml
  p2pnode config check --json /etc/p2pnode/p2pnode.yaml`,
		Args: checkArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := loadConfigFile(args[0])
			if err != nil {
				return err
			}
			res, err := checkConfig(&c)
			if err != nil {
				return fmt.Errorf("config %s: %w", args[0], err)
			}
			n := res.pcfg.Allowlist.Len()
			// What run listens on: p2p's default when the file names none.
			listen, listenText := c.Listen, plural(len(c.Listen), "listen address")
			if len(listen) == 0 {
				listen = []string{p2p.DefaultListenAddr}
				listenText = "listen address " + p2p.DefaultListenAddr + " (the default)"
			}
			if asJSON {
				out := map[string]any{"file": args[0], "ok": true, "peer": res.id.String(), "peers": n,
					"listen": listen, "ephemeral": c.Ephemeral}
				if c.DataDir != "" {
					out["data_dir"] = c.DataDir
				}
				if !c.Ephemeral {
					out["max_store_size"] = c.storeCap()
				}
				if res.mem.doc != nil {
					out["membership_version"] = res.mem.doc.Version()
					out["membership_file"] = res.mem.source(c.Membership)
				}
				return json.NewEncoder(a.out).Encode(out)
			}
			store := "data dir " + strconv.Quote(c.DataDir)
			switch {
			case c.Ephemeral:
				store = "ephemeral: no store"
			case c.DataDir == "":
				store = "data dir: the default of the key's peer ID"
			}
			if !c.Ephemeral {
				store += fmt.Sprintf(", store at most %d bytes", c.storeCap())
			}
			members := fmt.Sprintf("allowlist %q with %s", c.Allowlist, plural(n, "peer"))
			if res.mem.doc != nil {
				members = fmt.Sprintf("membership version %d from %q with %s", res.mem.doc.Version(),
					res.mem.source(c.Membership), plural(n, "member"))
			}
			_, err = fmt.Fprintf(a.out, "%s: ok (peer %s, key %q, %s, %s, %s)\n",
				args[0], res.id, c.Key, members, listenText, store)
			return err
		},
	}
	check.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.AddCommand(check)
	return cmd
}

// checkedConfig is what "config check" found: the node's configuration,
// and with --membership the version run would start from.
type checkedConfig struct {
	pcfg p2p.Config
	id   peer.ID
	mem  membershipChoice // zero without --membership
}

// checkConfig checks c as run does before it starts, with run's own
// functions: the values (validate), the files (loadNodeFiles), the DHT
// settings, the data directory, which run opens later, and with
// --membership the version run would put in force (chooseMembership): a
// version 1 that has expired is refused only when no newer version saved
// in the data directory replaces it.
func checkConfig(c *runConfig) (checkedConfig, error) {
	if err := c.validate(); err != nil {
		return checkedConfig{}, err
	}
	// The membership document's own checks are chooseMembership's, as in
	// run.
	pcfg, err := loadNodeFiles(c, zap.NewNop(), membership.ReadFile)
	if err != nil {
		return checkedConfig{}, err
	}
	res := checkedConfig{pcfg: pcfg}
	if res.id, err = peer.IDFromPrivateKey(pcfg.Key); err != nil {
		return checkedConfig{}, err
	}
	if _, err := c.DHT.dhtConfig(); err != nil {
		return checkedConfig{}, usageError{err}
	}
	if c.DataDir != "" {
		if st, err := os.Stat(c.DataDir); err == nil && !st.IsDir() {
			return checkedConfig{}, fmt.Errorf("data dir %s is not a directory", c.DataDir)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return checkedConfig{}, fmt.Errorf("data dir: %w", err)
		}
	}
	if c.Membership != "" {
		dataDir := ""
		if !c.Ephemeral {
			if dataDir, err = c.dataDir(res.id); err != nil {
				return checkedConfig{}, err
			}
		}
		if res.mem, err = chooseMembership(c.Membership, dataDir, time.Now(), zap.NewNop()); err != nil {
			return checkedConfig{}, err
		}
		if res.pcfg.Allowlist, err = res.mem.doc.Allowlist(); err != nil {
			return checkedConfig{}, err
		}
	}
	return res, nil
}
