package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// Relays and NAT for operators: "p2pnode check", and the relay part of
// "status".

// newCheckCmd builds "check".
func newCheckCmd(a *app) *cobra.Command {
	var (
		t      nodeTarget
		asJSON bool
		target string
	)
	cmd := &cobra.Command{
		Use:   "check --peer ID",
		Short: "Test how the running node reaches a peer: directly, through each relay, round trip times",
		Long: `check asks the running node, through its control socket, to test each way
to a peer: the direct one (its direct connection, or a dial to a direct
address the node knows) and a circuit through each of its static relays,
each with a ping. It prints, per way, whether it works, the address used,
the round trip time, or why it does not work: "does not answer" only when
no reply came in time; a peer that refuses the node (its refused events say
why) or closes the connection is reported as closing it, and a way the
node's own allowlist refuses is not tried, with the reason. It exits 1 when
no way works.

` + controlLong,
		Example: `  p2pnode check --peer 16Uiu2HAm...
  p2pnode check --peer 16Uiu2HAm... --json --data-dir /var/lib/p2pnode`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if target == "" {
				return usageErrorf("check needs --peer ID")
			}
			if _, err := peer.Decode(target); err != nil {
				return usageErrorf("--peer %q is not a peer ID: %v", target, err)
			}
			c, err := t.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			res, err := c.Check(ctx, target)
			if errors.Is(err, control.ErrInvalid) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			v := checkViewOf(target, res)
			if asJSON {
				err = encodeJSON(a.out, v)
			} else {
				err = printCheck(a.out, v)
			}
			if err == nil && !v.Reachable {
				err = fmt.Errorf("peer %s is not reachable: no way works", target)
			}
			return err
		},
	}
	bindNodeTarget(cmd.Flags(), &t, true)
	cmd.Flags().StringVar(&target, "peer", "", "peer `ID` to test")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	return cmd
}

// checkView is what check prints, as JSON with --json.
type checkView struct {
	Peer      string     `json:"peer"`
	Reachable bool       `json:"reachable"`
	Direct    pathView   `json:"direct"`
	Relays    []pathView `json:"relays"`
}

type pathView struct {
	Relay string  `json:"relay,omitempty"`
	Addr  string  `json:"addr,omitempty"`
	Tried bool    `json:"tried"`
	OK    bool    `json:"ok"`
	RTTms float64 `json:"rtt_ms,omitempty"`
	Error string  `json:"error,omitempty"`
}

func pathViewOf(p *pb.PathCheck) pathView {
	if p == nil {
		return pathView{}
	}
	return pathView{Relay: p.Relay, Addr: p.Addr, Tried: p.Tried, OK: p.Ok, RTTms: float64(p.RttUs) / 1000, Error: p.Error}
}

func checkViewOf(target string, res *pb.CheckResponse) checkView {
	v := checkView{Peer: target, Direct: pathViewOf(res.Direct), Relays: []pathView{}}
	v.Reachable = v.Direct.OK
	for _, r := range res.Relays {
		pv := pathViewOf(r)
		v.Relays = append(v.Relays, pv)
		v.Reachable = v.Reachable || pv.OK
	}
	return v
}

func printCheck(w io.Writer, v checkView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WAY\tRESULT\tRTT\tADDR")
	line := func(way string, p pathView) {
		result, rtt := "ok", fmt.Sprintf("%.2f ms", p.RTTms)
		// libp2p's dial errors span lines ("all dials failed\n  * [addr]
		// ..."): one row per way keeps the table a table.
		switch {
		case !p.Tried:
			result, rtt = "not tried: "+oneLine(p.Error), "-"
		case !p.OK:
			result, rtt = "failed: "+oneLine(p.Error), "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", way, result, rtt, dash(p.Addr))
	}
	line("direct", v.Direct)
	for _, r := range v.Relays {
		line("via "+r.Relay, r)
	}
	if len(v.Relays) == 0 {
		fmt.Fprintln(tw, "relayed\tnot tried: no relays configured\t-\t-")
	}
	return tw.Flush()
}

// Check implements control.Node.
func (c *nodeControl) Check(ctx context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error) {
	if c.r.ops.stopping.Load() {
		return nil, control.ErrStopping // its dials would race the host's close
	}
	p, err := peer.Decode(req.PeerId)
	if err != nil {
		return nil, fmt.Errorf("%w: peer %q: %v", control.ErrInvalid, req.PeerId, err)
	}
	// A well-formed ID the node cannot check is not a malformed request:
	// not ErrInvalid, which the CLI takes for a usage mistake.
	res, err := c.r.node.Check(ctx, p)
	switch {
	case errors.Is(err, p2p.ErrCheckSelf):
		return nil, fmt.Errorf("peer %s is this node: check tests the ways to another peer", p)
	case errors.Is(err, p2p.ErrNotAllowlisted):
		return nil, fmt.Errorf("peer %s is not on the node's allowlist: it cannot connect", p)
	}
	if err != nil {
		return nil, err
	}
	out := &pb.CheckResponse{Direct: pathPB(res.Direct)}
	for _, r := range res.Relays {
		out.Relays = append(out.Relays, pathPB(r))
	}
	return out, nil
}

func pathPB(p p2p.PathCheck) *pb.PathCheck {
	out := &pb.PathCheck{Tried: p.Tried, Ok: p.Tried && p.Err == nil, RttUs: p.RTT.Microseconds()}
	if p.Relay != "" {
		out.Relay = p.Relay.String()
	}
	if p.Addr != nil {
		out.Addr = p.Addr.String()
	}
	if p.Err != nil {
		out.Error = p.Err.Error()
	}
	return out
}

// relayStatusPB is the control API's form of a node's relay status.
func relayStatusPB(st p2p.RelayStatus, relayAddrs []ma.Multiaddr) *pb.RelayStatus {
	out := &pb.RelayStatus{
		Reservations:       int32(st.Reservations),
		Service:            st.Service,
		ServedReservations: int32(st.Served),
		Circuits:           int32(st.Circuits),
		RefusedRequests:    st.Refused,
		HolePunching:       st.HolePunching,
		HolePunchReady:     st.HolePunchReady,
		HolePunchOk:        st.HolePunchOK,
		HolePunchFailed:    st.HolePunchFailed,
		RelayAddrs:         multiaddrStrings(relayAddrs),
	}
	for _, r := range st.Relays {
		out.Relays = append(out.Relays, &pb.RelayPeer{PeerId: r.Peer.String(), Addrs: multiaddrStrings(r.Addrs), Connected: r.Connected})
	}
	return out
}

// relayView is the relay part of status --json.
type relayView struct {
	Relays          []relayPeerView `json:"relays"`
	Reservations    int32           `json:"reservations"`
	RelayAddrs      []string        `json:"relay_addrs"`
	Service         bool            `json:"service"`
	Served          int32           `json:"served_reservations"`
	Circuits        int32           `json:"circuits"`
	Refused         uint64          `json:"refused_requests"`
	HolePunching    bool            `json:"hole_punching"`
	HolePunchReady  bool            `json:"hole_punch_ready"`
	HolePunchOK     uint64          `json:"hole_punch_ok"`
	HolePunchFailed uint64          `json:"hole_punch_failed"`
}

// relayPeerView is one static relay in status --json.
type relayPeerView struct {
	Peer      string   `json:"peer"`
	Addrs     []string `json:"addrs"`
	Connected bool     `json:"connected"`
}

// relayViewOf gives every list, empty too, as [] ("relays":null beside
// "relay_addrs":[] made a script tell nil from empty).
func relayViewOf(r *pb.RelayStatus) relayView {
	v := relayView{Relays: []relayPeerView{}, RelayAddrs: []string{}}
	if r == nil {
		return v
	}
	for _, p := range r.Relays {
		addrs := p.Addrs
		if addrs == nil {
			addrs = []string{}
		}
		v.Relays = append(v.Relays, relayPeerView{p.PeerId, addrs, p.Connected})
	}
	if r.RelayAddrs != nil {
		v.RelayAddrs = r.RelayAddrs
	}
	v.Reservations, v.Service, v.Served, v.Circuits, v.Refused = r.Reservations, r.Service, r.ServedReservations, r.Circuits, r.RefusedRequests
	v.HolePunching, v.HolePunchReady, v.HolePunchOK, v.HolePunchFailed = r.HolePunching, r.HolePunchReady, r.HolePunchOk, r.HolePunchFailed
	return v
}

// printRelayStatus adds the relay lines to status's table.
func printRelayStatus(tw *tabwriter.Writer, v relayView) {
	if len(v.Relays) == 0 {
		fmt.Fprintf(tw, "relays\tnone\n")
	} else {
		var parts []string
		for _, r := range v.Relays {
			state := "connected"
			if !r.Connected {
				state = "not connected"
			}
			parts = append(parts, fmt.Sprintf("%s (%s)", r.Peer, state))
		}
		fmt.Fprintf(tw, "relays\t%s; %d reservations held\n", strings.Join(parts, ", "), v.Reservations)
	}
	if v.Service {
		fmt.Fprintf(tw, "relay service\ton: %d reservations, %d circuits, %d requests refused\n", v.Served, v.Circuits, v.Refused)
	} else {
		fmt.Fprintf(tw, "relay service\toff\n")
	}
	if v.HolePunching {
		ready := "ready"
		if !v.HolePunchReady {
			ready = "waiting for a public address"
		}
		fmt.Fprintf(tw, "hole punching\ton, %s: %d direct, %d failed\n", ready, v.HolePunchOK, v.HolePunchFailed)
	} else {
		fmt.Fprintf(tw, "hole punching\toff\n")
	}
}
