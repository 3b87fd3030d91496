package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
)

// callTimeout bounds a control call that does not wait on the network.
const callTimeout = 30 * time.Second

// newStatusCmd builds "status".
func newStatusCmd(a *app) *cobra.Command {
	var (
		t      nodeTarget
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running node's identity, addresses, load, store, allowlist and DHT",
		Long: `status asks the running node, through its control socket, for its peer ID,
listen addresses, version and uptime; the exchanges in flight (active,
queued behind a peer's active ones, requests received and not answered yet,
events not yet printed); its store (size on disk, outbox, dead letters);
its allowlist (file, entries, revision: 1 as loaded plus one per change in
this run, "version" in JSON, and the SHA-256 digest of the entries in force; on a node run with --membership,
which has no file, the membership version and hash whose members are the
list); its DHT state; and its relays (static relays, reservations held, the
relay service, hole punches).

` + controlLong,
		Example: `  p2pnode status
  p2pnode status --data-dir /var/lib/p2pnode --json
  p2pnode status --config /etc/p2pnode/p2pnode.yaml`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			c, err := t.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			s, err := c.Status(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return encodeJSON(a.out, statusJSON(s, c.Path()))
			}
			return printStatus(a, s, c.Path())
		},
	}
	bindNodeTarget(cmd.Flags(), &t, true)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as one JSON object")
	return cmd
}

// controlLong ends the help of the commands that use the running node.
const controlLong = `The node is found by --api SOCKET, --data-dir DIR, --config FILE (its api,
data_dir, or its key's default data directory) or --key FILE (its default
data directory); with none of them, the one node running with a default
data directory. The socket is control.sock in the data directory, mode
0600: only the node's user can use it. No node running is an error
(exit 1).`

// statusView is what status prints, as JSON with --json.
type statusView struct {
	Peer      string   `json:"peer"`
	Addrs     []string `json:"addrs"`
	Version   string   `json:"version"`
	Started   string   `json:"started"`
	DataDir   string   `json:"data_dir,omitempty"`
	API       string   `json:"api"`
	Connected int32    `json:"connected_peers"`
	Exchanges struct {
		Active          int32 `json:"active"`
		Queued          int32 `json:"queued"`
		PendingRequests int32 `json:"pending_requests"`
		EventsBacklog   int32 `json:"events_backlog"`
		OutcomesBacklog int32 `json:"outcomes_backlog"`
	} `json:"exchanges"`
	Store struct {
		Enabled     bool  `json:"enabled"`
		SizeBytes   int64 `json:"size_bytes"`
		Outbox      int32 `json:"outbox"`
		DeadLetters int32 `json:"dead_letters"`
	} `json:"store"`
	Allowlist struct {
		File    string `json:"file"` // empty with --membership: no file
		Entries int32  `json:"entries"`
		Version uint64 `json:"version"`
		Digest  string `json:"digest"`
		// With --membership: the version whose members are the list.
		MembershipVersion uint64 `json:"membership_version,omitempty"`
		MembershipHash    string `json:"membership_hash,omitempty"`
	} `json:"allowlist"`
	DHT struct {
		Enabled      bool   `json:"enabled"`
		Ready        bool   `json:"ready"`
		RoutingTable int32  `json:"routing_table"`
		Published    string `json:"published,omitempty"`
	} `json:"dht"`
	Relay relayView `json:"relay"`
}

func statusJSON(s *pb.StatusResponse, api string) statusView {
	j := statusView{Peer: s.PeerId, Addrs: s.ListenAddrs, Version: s.Version, Started: formatTime(unixMs(s.StartedUnixMs)),
		DataDir: s.DataDir, API: api, Connected: s.ConnectedPeers}
	if j.Addrs == nil {
		j.Addrs = []string{}
	}
	if h := s.Handler; h != nil {
		j.Exchanges.Active, j.Exchanges.Queued, j.Exchanges.PendingRequests = h.Active, h.Queued, h.PendingRequests
		j.Exchanges.EventsBacklog, j.Exchanges.OutcomesBacklog = h.EventsBacklog, h.OutcomesBacklog
	}
	if st := s.Store; st != nil {
		j.Store.Enabled, j.Store.SizeBytes, j.Store.Outbox, j.Store.DeadLetters = st.Enabled, st.SizeBytes, st.Outbox, st.DeadLetters
	}
	if al := s.Allowlist; al != nil {
		j.Allowlist.File, j.Allowlist.Entries, j.Allowlist.Version, j.Allowlist.Digest = al.File, al.Entries, al.Version, al.Digest
		j.Allowlist.MembershipVersion, j.Allowlist.MembershipHash = al.MembershipVersion, al.MembershipHash
	}
	if d := s.Dht; d != nil {
		j.DHT.Enabled, j.DHT.Ready, j.DHT.RoutingTable = d.Enabled, d.Ready, d.RoutingTable
		j.DHT.Published = formatTime(unixMs(d.PublishedUnixMs))
	}
	j.Relay = relayViewOf(s.Relay)
	return j
}

func printStatus(a *app, s *pb.StatusResponse, api string) error {
	j := statusJSON(s, api)
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	started := unixMs(s.StartedUnixMs)
	fmt.Fprintf(tw, "peer\t%s\n", j.Peer)
	fmt.Fprintf(tw, "listening\t%s\n", dash(strings.Join(j.Addrs, " ")))
	fmt.Fprintf(tw, "version\t%s\n", j.Version)
	fmt.Fprintf(tw, "started\t%s (up %s)\n", tableTime(started), time.Since(started).Round(time.Second))
	fmt.Fprintf(tw, "control socket\t%s\n", api)
	fmt.Fprintf(tw, "connected peers\t%d\n", j.Connected)
	e := j.Exchanges
	fmt.Fprintf(tw, "exchanges\t%d active, %d queued, %d requests unanswered, %d events and %d outcomes not yet printed\n",
		e.Active, e.Queued, e.PendingRequests, e.EventsBacklog, e.OutcomesBacklog)
	if j.Store.Enabled {
		fmt.Fprintf(tw, "store\t%s: %d bytes, %d in the outbox, %d dead letters\n", j.DataDir, j.Store.SizeBytes, j.Store.Outbox, j.Store.DeadLetters)
	} else {
		fmt.Fprintf(tw, "store\tnone (ephemeral)\n")
	}
	al := j.Allowlist
	source := al.File
	if al.MembershipVersion != 0 {
		source = fmt.Sprintf("membership version %d (%s)", al.MembershipVersion, shortDigest(al.MembershipHash))
	}
	// "revision", not "version": beside a membership version, two
	// versions read as one thing.
	fmt.Fprintf(tw, "allowlist\t%s: %d entries, revision %d in this run, digest %s\n", source, al.Entries, al.Version, shortDigest(al.Digest))
	switch d := j.DHT; {
	case !d.Enabled:
		fmt.Fprintf(tw, "dht\toff\n")
	case !d.Ready:
		fmt.Fprintf(tw, "dht\tjoining: routing table empty\n")
	default:
		pub := "not yet published"
		if d.Published != "" {
			pub = "published " + tableTime(unixMs(s.Dht.PublishedUnixMs))
		}
		fmt.Fprintf(tw, "dht\tready, %d peers in the routing table, %s\n", d.RoutingTable, pub)
	}
	printRelayStatus(tw, j.Relay)
	return tw.Flush()
}

// unixMs is a time from Unix milliseconds; 0 is the zero time.
func unixMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// shortDigest is the first 16 hex digits of a digest, enough to compare.
func shortDigest(d string) string {
	if len(d) > 16 {
		return d[:16]
	}
	return dash(d)
}
