package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// Events the CLI adds to the node's own (p2p.Event values). Errors of the
// CLI itself (a bad stdin line, a failed reload) are p2p.Error values
// without a peer.

// listeningEvent is the first line "run" prints: who the node is and where
// it can be reached.
type listeningEvent struct {
	Peer    peer.ID
	Addrs   []ma.Multiaddr
	Metrics string // address the metrics server listens on; empty when off
	DataDir string // the store's directory; empty when ephemeral
	API     string // the control socket; empty when none
	// Membership is the membership version in force; 0 when the node
	// uses a YAML allowlist.
	Membership uint64
}

// reloadedEvent reports that the allowlist or routes file was read again.
type reloadedEvent struct {
	Kind  string // "allowlist" or "routes"
	File  string
	Count int // peers or rules now in force
}

// The JSON shape of each event. Field order is the order of the output, and
// "event" always comes first. These shapes are the CLI's contract with
// scripts: add fields, never rename or remove them.
type (
	jsonListening struct {
		Event   string   `json:"event"`
		Peer    string   `json:"peer"`
		Addrs   []string `json:"addrs"`
		Metrics string   `json:"metrics,omitempty"`
		DataDir string   `json:"data_dir,omitempty"`
		API     string   `json:"api,omitempty"`
		// Membership is the membership version in force; absent with a
		// YAML allowlist.
		Membership uint64 `json:"membership_version,omitempty"`
	}
	jsonData struct {
		Event       string  `json:"event"`
		From        string  `json:"from"`
		FromName    string  `json:"from_name,omitempty"` // the allowlist's name of the peer
		Data        *string `json:"data,omitempty"`      // only when the payload is valid UTF-8
		DataB64     string  `json:"data_b64"`
		Channel     uint32  `json:"channel,omitempty"`
		FromChannel uint32  `json:"from_channel,omitempty"`
		// A one-way message delivered again after a restart: the previous
		// process printed it (perhaps) but never acknowledged it.
		Redelivered bool `json:"redelivered,omitempty"`
	}
	jsonStatus struct {
		Event    string `json:"event"`
		Peer     string `json:"peer"`
		PeerName string `json:"peer_name,omitempty"`
		ID       uint64 `json:"id"`
		OK       bool   `json:"ok"`
		Reason   string `json:"reason"`
		Error    string `json:"error,omitempty"`
	}
	jsonConnected struct {
		Event     string `json:"event"`
		Peer      string `json:"peer"`
		PeerName  string `json:"peer_name,omitempty"`
		Addr      string `json:"addr,omitempty"`
		Direction string `json:"direction"`
		// Relayed: through a circuit relay (addr holds /p2p-circuit).
		Relayed bool `json:"relayed,omitempty"`
	}
	jsonPeer struct {
		Event    string `json:"event"`
		Peer     string `json:"peer"`
		PeerName string `json:"peer_name,omitempty"`
	}
	jsonConnectionLimit struct {
		Event    string `json:"event"`
		Peer     string `json:"peer,omitempty"`
		PeerName string `json:"peer_name,omitempty"`
		IP       string `json:"ip,omitempty"`
		Reason   string `json:"reason"`
		Until    string `json:"until"`
	}
	jsonError struct {
		Event    string `json:"event"`
		Peer     string `json:"peer,omitempty"`
		PeerName string `json:"peer_name,omitempty"`
		// ID: the stdin id of a request refused at once (commandError).
		ID    *uint64 `json:"id,omitempty"`
		Error string  `json:"error"`
	}
	jsonDropped struct {
		Event    string `json:"event"`
		Peer     string `json:"peer"`
		PeerName string `json:"peer_name,omitempty"`
		ID       uint64 `json:"id"`
		Count    uint64 `json:"count"`
	}
	jsonRefused struct {
		Event    string `json:"event"`
		Peer     string `json:"peer,omitempty"`
		PeerName string `json:"peer_name,omitempty"`
		IP       string `json:"ip,omitempty"`
		Reason   string `json:"reason"`
		Count    uint64 `json:"count"`
	}
	jsonReloaded struct {
		Event string `json:"event"`
		Kind  string `json:"kind"`
		File  string `json:"file"`
		Count int    `json:"count"`
	}
)

// toJSON returns the JSON shape of ev, or nil for an event type the CLI
// does not know (a newer p2p package): it is then printed as an error
// event rather than lost. names gives the allowlist's name of a peer (nil:
// none).
func toJSON(ev any, names namer) any {
	switch e := ev.(type) {
	case listeningEvent:
		addrs := make([]string, len(e.Addrs))
		for i, a := range e.Addrs {
			addrs[i] = a.String()
		}
		return jsonListening{"listening", e.Peer.String(), addrs, e.Metrics, e.DataDir, e.API, e.Membership}
	case p2p.Data:
		j := jsonData{Event: "data", From: e.From.String(), FromName: names.of(e.From), DataB64: base64.StdEncoding.EncodeToString(e.Bytes),
			Channel: e.Channel, FromChannel: e.FromChannel}
		if utf8.Valid(e.Bytes) {
			s := string(e.Bytes)
			j.Data = &s
		}
		return j
	case p2p.Status:
		return jsonStatus{"status", e.Peer.String(), names.of(e.Peer), e.MsgID, e.OK, string(e.Reason), errText(e.Err)}
	case p2p.Connected:
		j := jsonConnected{Event: "connected", Peer: e.Peer.String(), PeerName: names.of(e.Peer), Direction: direction(e.Inbound), Relayed: e.Relayed}
		if e.Addr != nil {
			j.Addr = e.Addr.String()
		}
		return j
	case p2p.Disconnected:
		return jsonPeer{"disconnected", e.Peer.String(), names.of(e.Peer)}
	case p2p.ConnectionLimit:
		j := jsonConnectionLimit{Event: "connection_limit", Reason: e.Reason.String(), Until: formatTime(e.Until)}
		if e.Peer != "" {
			j.Peer, j.PeerName = e.Peer.String(), names.of(e.Peer)
		}
		if e.IP.IsValid() {
			j.IP = e.IP.String()
		}
		return j
	case p2p.Refused:
		j := jsonRefused{Event: "refused", Reason: string(e.Reason), Count: e.Count}
		if e.Peer != "" {
			j.Peer, j.PeerName = e.Peer.String(), names.of(e.Peer)
		}
		if e.IP.IsValid() {
			j.IP = e.IP.String()
		}
		return j
	case p2p.Error:
		j := jsonError{Event: "error", Error: errText(e.Err)}
		if e.Peer != "" {
			j.Peer, j.PeerName = e.Peer.String(), names.of(e.Peer)
		}
		return j
	case badLineEvent:
		id := e.ID
		return jsonError{Event: "error", ID: &id, Error: errText(e.Err)}
	case p2p.Dropped:
		return jsonDropped{"dropped", e.Peer.String(), names.of(e.Peer), e.MsgID, e.Count}
	case reloadedEvent:
		return jsonReloaded{"reloaded", e.Kind, e.File, e.Count}
	}
	if j := membershipJSON(ev); j != nil {
		return j
	}
	if j := relayJSON(ev, names); j != nil {
		return j
	}
	return handlerJSON(ev, names)
}

// toText returns the line a person reads for ev, without the newline.
func toText(ev any, names namer) string {
	switch e := ev.(type) {
	case listeningEvent:
		var b strings.Builder
		fmt.Fprintf(&b, "listening as %s on", e.Peer)
		for _, a := range e.Addrs {
			b.WriteString(" ")
			b.WriteString(a.String())
		}
		if e.Metrics != "" {
			fmt.Fprintf(&b, " (metrics on http://%s/metrics)", e.Metrics)
		}
		if e.DataDir != "" {
			fmt.Fprintf(&b, " (data in %s)", e.DataDir)
		} else {
			b.WriteString(" (ephemeral)")
		}
		if e.API != "" {
			fmt.Fprintf(&b, " (control socket %s)", e.API)
		}
		if e.Membership != 0 {
			fmt.Fprintf(&b, " (membership version %d)", e.Membership)
		}
		return b.String()
	case p2p.Data:
		ch := ""
		if e.Channel != 0 || e.FromChannel != 0 {
			ch = fmt.Sprintf(" (channel %d -> %d)", e.FromChannel, e.Channel)
		}
		return fmt.Sprintf("data from %s%s: %s", names.text(e.From), ch, payloadText(e.Bytes))
	case p2p.Status:
		if e.OK {
			return fmt.Sprintf("status %s #%d: ok", names.text(e.Peer), e.MsgID)
		}
		s := fmt.Sprintf("status %s #%d: failed: %s", names.text(e.Peer), e.MsgID, e.Reason)
		if e.Err != nil {
			s += " (" + errText(e.Err) + ")"
		}
		return s
	case p2p.Connected:
		addr := ""
		if e.Addr != nil {
			addr = " " + e.Addr.String()
		}
		via := ""
		if e.Relayed {
			via = ", relayed"
		}
		return fmt.Sprintf("connected %s, %s%s%s", names.text(e.Peer), direction(e.Inbound), via, addr)
	case p2p.Disconnected:
		return fmt.Sprintf("disconnected %s", names.text(e.Peer))
	case p2p.ConnectionLimit:
		who := "peer " + names.text(e.Peer)
		if e.Peer == "" {
			who = "ip " + e.IP.String()
		}
		return fmt.Sprintf("connection limit: %s cut off for %s until %s", who, e.Reason, formatTime(e.Until))
	case p2p.Refused:
		return refusedText(e, names)
	case p2p.Error:
		if e.Peer != "" {
			return fmt.Sprintf("error: %s: %s", names.text(e.Peer), errText(e.Err))
		}
		return "error: " + errText(e.Err)
	case badLineEvent:
		return fmt.Sprintf("error: id %d: %s", e.ID, errText(e.Err))
	case p2p.Dropped:
		return fmt.Sprintf("dropped %d messages from %s (receiver buffer full; last id %d)", e.Count, names.text(e.Peer), e.MsgID)
	case reloadedEvent:
		unit := "peers"
		if e.Kind == "routes" {
			unit = "rules"
		}
		return fmt.Sprintf("reloaded %s %s: %d %s", e.Kind, e.File, e.Count, unit)
	}
	if s := membershipText(ev); s != "" {
		return s
	}
	if s := relayText(ev, names); s != "" {
		return s
	}
	if s := handlerText(ev, names); s != "" {
		return s
	}
	return fmt.Sprintf("error: unknown event %T", ev)
}

// renderEvent returns the output line of ev, newline included, without
// peer names.
func renderEvent(ev any, asJSON bool) []byte { return renderNamed(ev, asJSON, nil) }

// renderNamed returns the output line of ev, newline included, with the
// names of its peers.
func renderNamed(ev any, asJSON bool, names namer) []byte {
	if !asJSON {
		return []byte(oneLine(toText(ev, names)) + "\n")
	}
	j := toJSON(ev, names)
	if j == nil {
		j = jsonError{Event: "error", Error: fmt.Sprintf("unknown event %T", ev)}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	// Payload text stays readable: "<" rather than "\u003c".
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		// Every field is a string, number or bool: this cannot happen, but
		// a line must come out whatever happens.
		return []byte(`{"event":"error","error":` + strconv.Quote(err.Error()) + "}\n")
	}
	return b.Bytes()
}

// payloadText shows a payload on one line: as is when it is printable text,
// quoted when it holds control characters (a newline would split the
// line), and as base64 when it is not UTF-8.
func payloadText(b []byte) string {
	if !utf8.Valid(b) {
		return fmt.Sprintf("(%d bytes, base64) %s", len(b), base64.StdEncoding.EncodeToString(b))
	}
	s := string(b)
	if strings.ContainsFunc(s, unicode.IsControl) {
		return strconv.Quote(s)
	}
	return s
}

func direction(inbound bool) string {
	if inbound {
		return "inbound"
	}
	return "outbound"
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return oneLine(err.Error())
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// refusedText is the text line of a refused event.
func refusedText(e p2p.Refused, names namer) string {
	var b strings.Builder
	b.WriteString("refused ")
	switch {
	case e.Peer != "" && e.IP.IsValid():
		fmt.Fprintf(&b, "%s from %s", names.text(e.Peer), e.IP)
	case e.Peer != "":
		b.WriteString(names.text(e.Peer))
	case e.IP.IsValid():
		fmt.Fprintf(&b, "a connection from %s", e.IP)
	default:
		b.WriteString("connections")
	}
	fmt.Fprintf(&b, ": %s", e.Reason)
	switch e.Reason {
	case p2p.RefusedUnknownPeer:
		b.WriteString(" (not on the allowlist)")
	case p2p.RefusedIPMismatch:
		b.WriteString(" (its allowlist entry does not admit this IP)")
	case p2p.RefusedIPNotAllowlisted:
		b.WriteString(" (no allowlist entry admits this IP)")
	case p2p.RefusedRelayNotAllowed:
		b.WriteString(" (came through a relay; its allowlist entry binds it to IPs without relay: true)")
	case p2p.RefusedRelaySourceMismatch:
		b.WriteString(" (came through a relay that announced another peer as the source)")
	case p2p.RefusedRelayBusy:
		b.WriteString(" (too many handshakes through this relay in progress)")
	}
	if e.Count > 1 {
		fmt.Fprintf(&b, ", %d times", e.Count)
	}
	return b.String()
}
