package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/dht"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

const findLong = `find joins the DHT through the --bootstrap peers with a node of its own,
looks the peer up, prints its addresses and the age of its signed record,
and exits 0. A peer whose record has expired counts as inactive: find
prints its last addresses and exits 1. A peer without a record (an older
node) is looked up with kad-dht's FindPeer instead; its addresses then come
without a record.

Each address is printed with /p2p/<id>, ready for "p2pnode send --addr".

--config reads key, allowlist and the DHT bootstrap list from a run
configuration file; its listen addresses are not used. With --membership
(config key membership), find admits the members of the version run would
start from: the newer of the file given and the one saved in the data
directory (data_dir, or the default of the key), which it only reads.

find joins the DHT only to look up: it publishes no record of its own.
Still, prefer a key of its own (allowlisted like any node) to a running
node's: peers would see two hosts with one identity. find's node takes no
message: a peer that sends one to its key meanwhile has it refused as a
failed dial, keeps it and resends it (one of its attempts).`

// newFindCmd builds "find".
func newFindCmd(a *app) *cobra.Command {
	var (
		configPath string
		flags      runConfig
		target     string
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "find --bootstrap MULTIADDR --peer ID",
		Short: "Find a peer's addresses in the DHT",
		Long:  findLong,
		Example: `  p2pnode find --key me.key --allowlist allowlist.yaml --bootstrap /ip4/10.0.0.1/tcp/4001/p2p/16Uiu2HAm... --peer 16Uiu2HAm...
  p2pnode find --config p2pnode.yaml --peer 16Uiu2HAm... --json`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := clientConfig(configPath, cmd.Flags(), true)
			if err != nil {
				return err
			}
			if len(cfg.DHT.Bootstrap) == 0 {
				return usageErrorf("find needs --bootstrap: a DHT member to join through")
			}
			if target == "" {
				return usageErrorf("find needs --peer: the peer ID to look up")
			}
			p, err := peer.Decode(target)
			if err != nil {
				return usageErrorf("--peer %q is not a peer ID", target)
			}
			if timeout <= 0 {
				return usageErrorf("--timeout must be positive (got %s)", timeout)
			}
			return runFind(a, cfg, p, timeout)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&configPath, "config", "", "run configuration `FILE` for key, allowlist and bootstrap peers; flags override it")
	bindClientFlags(fs, &flags)
	// find has no --dht (it always uses the DHT), and reads records
	// rather than publishing one: the shared text would misdescribe it.
	fs.Lookup("membership").Usage = "membership document `FILE` (docs/membership.md), instead of --allowlist: admit its members and read the DHT records sealed to them"
	fs.StringVar(&target, "peer", "", "the peer `ID` to look up")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long, joining included")
	return cmd
}

// findResult is what find prints.
type findResult struct {
	Peer      string   `json:"peer"`
	Addrs     []string `json:"addrs"`
	Source    string   `json:"source"` // "record", or "findpeer" for a peer without one
	Seq       uint64   `json:"seq,omitempty"`
	Published string   `json:"published,omitempty"`
	Expires   string   `json:"expires,omitempty"`
	AgeMS     float64  `json:"age_ms,omitempty"`
	Expired   bool     `json:"expired"`
}

func runFind(a *app, cfg runConfig, p peer.ID, timeout time.Duration) error {
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
	if self, err := peer.IDFromPrivateKey(pcfg.Key); err == nil && p == self {
		return usageErrorf("--peer %s is find's own key: it would find itself; give another peer's ID, or another --key", p)
	}
	node, err := startFindNode(pcfg)
	if err != nil {
		return err
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d, err := joinDHT(ctx, node, cfg, doc, log, timeout)
	if err != nil {
		return err
	}
	defer d.Close()

	now := time.Now()
	res := findResult{Peer: p.String(), Source: "record"}
	rec, err := d.Find(ctx, p)
	switch {
	case err == nil, errors.Is(err, dht.ErrExpired):
		res.Addrs = p2pAddrs(rec.Addrs, p)
		res.Seq, res.Published, res.Expires = rec.Seq, formatTime(rec.Published), formatTime(rec.Expires)
		res.AgeMS, res.Expired = millis(rec.Age(now)), rec.Expired(now)
	case errors.Is(err, dht.ErrNotFound):
		// No record: an older node, or one that has not published yet.
		// Resolve falls back on FindPeer.
		addrs, rerr := d.Resolve(ctx, p)
		if rerr != nil {
			if errors.Is(err, p2p.ErrClosedAtHandshake) && !errors.Is(rerr, p2p.ErrClosedAtHandshake) {
				// A peer asked refused this node (by its IP, before the
				// handshake), and left the routing table for it: the
				// fallback only finds the table empty.
				return fmt.Errorf("find %s: %w", p, err)
			}
			return fmt.Errorf("find %s: not found in the DHT: %v", p, rerr)
		}
		res.Source, res.Addrs = "findpeer", p2pAddrs(addrs, p)
	case ctx.Err() != nil:
		return fmt.Errorf("find %s: no answer within %s", p, timeout)
	default:
		return fmt.Errorf("find %s: %w", p, err)
	}
	if err := printFindResult(a, cfg.JSON, res, rec, now); err != nil {
		return err
	}
	if res.Expired {
		return fmt.Errorf("peer %s is inactive: its record expired %s ago", p, now.Sub(rec.Expires).Round(time.Second))
	}
	return nil
}

// startFindNode starts find's node. It serves no message stream
// (p2p.Config.NoInboundMessages): its key may be a running node's, whose
// peers, once find has connected to them for the DHT, would send that node's
// messages to find, which would ack them OK and hand them to no one. Refused,
// they stay with their senders, who retry. Its Receiver is drained until
// Close: nobody reads its events, which only say who connected.
func startFindNode(pcfg p2p.Config) (*p2p.Node, error) {
	pcfg.NoInboundMessages = true
	node, err := p2p.New(pcfg)
	if err != nil {
		return nil, err
	}
	go func() {
		for range node.Receiver() {
		}
	}()
	return node, nil
}

// joinDHT starts a DHT on node with cfg's bootstrap peers and waits until
// it can look peers up. doc is the membership version in force
// (loadToolConfig), nil without --membership.
func joinDHT(ctx context.Context, node *p2p.Node, cfg runConfig, doc *membership.Document, log *zap.Logger, timeout time.Duration) (*dht.DHT, error) {
	if len(cfg.DHT.Bootstrap) == 0 {
		return nil, usageErrorf("--dht needs --bootstrap: a DHT member to join through")
	}
	dcfg, err := cfg.DHT.dhtConfig()
	if err != nil {
		return nil, err
	}
	dcfg.Logger = log
	// A tool only looks up: it must not publish a record for its key,
	// which may be a running node's.
	dcfg.NoPublish = true
	if doc != nil {
		// The members' records are sealed to them: reading them takes the
		// version in force.
		dcfg.Membership = func() *membership.Document { return doc }
	}
	d, err := dht.New(node, dcfg)
	if err != nil {
		return nil, err
	}
	if err := d.WaitReady(ctx); err != nil {
		why := d.BootstrapError()
		_ = d.Close()
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, errors.New("interrupted while joining the DHT")
		}
		if why != nil {
			return nil, fmt.Errorf("dht: no bootstrap peer answered within %s; the last try: %w", timeout, why)
		}
		return nil, fmt.Errorf("dht: no bootstrap peer answered within %s", timeout)
	}
	return d, nil
}

// p2pAddrs appends /p2p/<p> to each transport address.
func p2pAddrs(addrs []ma.Multiaddr, p peer.ID) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		full, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: p, Addrs: []ma.Multiaddr{a}})
		if err != nil || len(full) == 0 {
			continue
		}
		out = append(out, full[0].String())
	}
	return out
}

func printFindResult(a *app, asJSON bool, res findResult, rec dht.Record, now time.Time) error {
	if asJSON {
		return json.NewEncoder(a.out).Encode(res)
	}
	var b strings.Builder
	switch {
	case res.Source == "findpeer":
		fmt.Fprintf(&b, "%s: %s (no signed record; found by FindPeer)\n", res.Peer, plural(len(res.Addrs), "address"))
	case res.Expired:
		fmt.Fprintf(&b, "%s: %s, record %s old, INACTIVE: expired %s ago\n", res.Peer, plural(len(res.Addrs), "address"),
			rec.Age(now).Round(time.Millisecond), now.Sub(rec.Expires).Round(time.Second))
	default:
		fmt.Fprintf(&b, "%s: %s, record %s old, expires in %s\n", res.Peer, plural(len(res.Addrs), "address"),
			rec.Age(now).Round(time.Millisecond), rec.Expires.Sub(now).Round(time.Second))
	}
	for _, s := range res.Addrs {
		b.WriteString("  " + s + "\n")
	}
	_, err := fmt.Fprint(a.out, b.String())
	return err
}
