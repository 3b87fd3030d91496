package main

import (
	"fmt"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// The relay events of "run": reservations held on the static relays, hole
// punching becoming possible, and hole punches.
type (
	jsonRelayReservations struct {
		Event string `json:"event"`
		Count int    `json:"count"`
	}
	jsonHolePunch struct {
		Event    string `json:"event"`
		Peer     string `json:"peer"`
		PeerName string `json:"peer_name,omitempty"`
		OK       bool   `json:"ok"`
		Error    string `json:"error,omitempty"`
	}
)

// relayJSON is the JSON shape of a relay event, or nil for another event.
func relayJSON(ev any, names namer) any {
	switch e := ev.(type) {
	case p2p.RelayReservations:
		return jsonRelayReservations{"relay_reservations", e.Count}
	case p2p.HolePunch:
		return jsonHolePunch{"hole_punch", e.Peer.String(), names.of(e.Peer), e.OK, e.Err}
	case p2p.HolePunchReady:
		return struct {
			Event string `json:"event"`
		}{"hole_punch_ready"}
	}
	return nil
}

// relayText is the text line of a relay event, or "" for another event.
func relayText(ev any, names namer) string {
	switch e := ev.(type) {
	case p2p.RelayReservations:
		if e.Count == 0 {
			return "relay reservations: none (peers cannot dial this node through its relays now)"
		}
		return fmt.Sprintf("relay reservations: %d", e.Count)
	case p2p.HolePunch:
		if e.OK {
			return fmt.Sprintf("hole punch %s: ok, direct connection", names.text(e.Peer))
		}
		return fmt.Sprintf("hole punch %s: failed: %s (staying relayed)", names.text(e.Peer), e.Err)
	case p2p.HolePunchReady:
		return "hole punching ready: this node knows a public address of its own"
	}
	return ""
}
