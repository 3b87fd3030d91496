package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
)

// newPeersCmd builds "peers".
func newPeersCmd(a *app) *cobra.Command {
	var (
		t      nodeTarget
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "List the running node's connected and allowlisted peers",
		Long: `peers asks the running node, through its control socket, for every peer
that is connected or on its allowlist: the allowlist's name for it, whether
it is listed and connected, the remote addresses and direction (inbound,
outbound, both) of its connections, whether they are direct or go through
a relay (VIA: direct, relayed, both), since when it is connected, when its
last exchange ended, its exchanges in flight, and whether the rate limiter
has cut it off (banned). Connected peers come first.

` + controlLong,
		Example: `  p2pnode peers
  p2pnode peers --data-dir /var/lib/p2pnode --json`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			c, err := t.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			res, err := c.Peers(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				j := struct {
					Peers []peerView `json:"peers"`
				}{[]peerView{}}
				for _, p := range res.Peers {
					j.Peers = append(j.Peers, peerViewOf(p))
				}
				return encodeJSON(a.out, j)
			}
			return printPeers(a, res.Peers)
		},
	}
	bindNodeTarget(cmd.Flags(), &t, true)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the peers as one JSON object")
	return cmd
}

// peerView is one peer as peers --json prints it.
type peerView struct {
	Peer           string   `json:"peer"`
	Name           string   `json:"name,omitempty"`
	Allowlisted    bool     `json:"allowlisted"`
	Connected      bool     `json:"connected"`
	Addrs          []string `json:"addrs"`
	Direction      string   `json:"direction,omitempty"`
	Connection     string   `json:"connection,omitempty"`
	ConnectedSince string   `json:"connected_since,omitempty"`
	LastExchange   string   `json:"last_exchange,omitempty"`
	Active         int32    `json:"active_exchanges"`
	Queued         int32    `json:"queued_exchanges"`
	Banned         bool     `json:"banned"`
}

func peerViewOf(p *pb.PeerInfo) peerView {
	v := peerView{Peer: p.PeerId, Name: p.Name, Allowlisted: p.Allowlisted, Connected: p.Connected, Addrs: p.Addrs,
		Direction: p.Direction, Connection: p.Connection, ConnectedSince: formatTime(unixMs(p.ConnectedSinceUnixMs)),
		LastExchange: formatTime(unixMs(p.LastExchangeUnixMs)), Active: p.ActiveExchanges, Queued: p.QueuedExchanges, Banned: p.Banned}
	if v.Addrs == nil {
		v.Addrs = []string{}
	}
	return v
}

func printPeers(a *app, peers []*pb.PeerInfo) error {
	if len(peers) == 0 {
		_, err := fmt.Fprintln(a.out, "no peers: none connected, and the allowlist lists no peer but this node")
		return err
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tNAME\tLISTED\tSTATE\tDIRECTION\tVIA\tSINCE\tLAST EXCHANGE\tEXCHANGES\tADDRS")
	for _, p := range peers {
		state := "disconnected"
		switch {
		case p.Banned:
			state = "banned"
		case p.Connected:
			state = "connected"
		}
		listed := "yes"
		if !p.Allowlisted {
			listed = "no"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d+%d\t%s\n", p.PeerId, dash(p.Name), listed, state, dash(p.Direction), dash(p.Connection),
			tableTime(unixMs(p.ConnectedSinceUnixMs)), tableTime(unixMs(p.LastExchangeUnixMs)),
			p.ActiveExchanges, p.QueuedExchanges, dash(strings.Join(p.Addrs, " ")))
	}
	return tw.Flush()
}
