package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
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
	}
	jsonData struct {
		Event       string  `json:"event"`
		From        string  `json:"from"`
		Data        *string `json:"data,omitempty"` // only when the payload is valid UTF-8
		DataB64     string  `json:"data_b64"`
		Channel     uint32  `json:"channel,omitempty"`
		FromChannel uint32  `json:"from_channel,omitempty"`
		// A one-way message delivered again after a restart: the previous
		// process printed it (perhaps) but never acknowledged it.
		Redelivered bool `json:"redelivered,omitempty"`
	}
	jsonStatus struct {
		Event  string `json:"event"`
		Peer   string `json:"peer"`
		ID     uint64 `json:"id"`
		OK     bool   `json:"ok"`
		Reason string `json:"reason"`
		Error  string `json:"error,omitempty"`
	}
	jsonConnected struct {
		Event     string `json:"event"`
		Peer      string `json:"peer"`
		Addr      string `json:"addr,omitempty"`
		Direction string `json:"direction"`
	}
	jsonPeer struct {
		Event string `json:"event"`
		Peer  string `json:"peer"`
	}
	jsonConnectionLimit struct {
		Event  string `json:"event"`
		Peer   string `json:"peer,omitempty"`
		IP     string `json:"ip,omitempty"`
		Reason string `json:"reason"`
		Until  string `json:"until"`
	}
	jsonError struct {
		Event string `json:"event"`
		Peer  string `json:"peer,omitempty"`
		Error string `json:"error"`
	}
	jsonDropped struct {
		Event string `json:"event"`
		Peer  string `json:"peer"`
		ID    uint64 `json:"id"`
		Count uint64 `json:"count"`
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
// event rather than lost.
func toJSON(ev any) any {
	switch e := ev.(type) {
	case listeningEvent:
		addrs := make([]string, len(e.Addrs))
		for i, a := range e.Addrs {
			addrs[i] = a.String()
		}
		return jsonListening{"listening", e.Peer.String(), addrs, e.Metrics, e.DataDir, e.API}
	case p2p.Data:
		j := jsonData{Event: "data", From: e.From.String(), DataB64: base64.StdEncoding.EncodeToString(e.Bytes),
			Channel: e.Channel, FromChannel: e.FromChannel}
		if utf8.Valid(e.Bytes) {
			s := string(e.Bytes)
			j.Data = &s
		}
		return j
	case p2p.Status:
		return jsonStatus{"status", e.Peer.String(), e.MsgID, e.OK, string(e.Reason), errText(e.Err)}
	case p2p.Connected:
		j := jsonConnected{Event: "connected", Peer: e.Peer.String(), Direction: direction(e.Inbound)}
		if e.Addr != nil {
			j.Addr = e.Addr.String()
		}
		return j
	case p2p.Disconnected:
		return jsonPeer{"disconnected", e.Peer.String()}
	case p2p.ConnectionLimit:
		j := jsonConnectionLimit{Event: "connection_limit", Reason: e.Reason.String(), Until: formatTime(e.Until)}
		if e.Peer != "" {
			j.Peer = e.Peer.String()
		}
		if e.IP.IsValid() {
			j.IP = e.IP.String()
		}
		return j
	case p2p.Error:
		j := jsonError{Event: "error", Error: errText(e.Err)}
		if e.Peer != "" {
			j.Peer = e.Peer.String()
		}
		return j
	case p2p.Dropped:
		return jsonDropped{"dropped", e.Peer.String(), e.MsgID, e.Count}
	case reloadedEvent:
		return jsonReloaded{"reloaded", e.Kind, e.File, e.Count}
	}
	return handlerJSON(ev)
}

// toText returns the line a person reads for ev, without the newline.
func toText(ev any) string {
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
		return b.String()
	case p2p.Data:
		ch := ""
		if e.Channel != 0 || e.FromChannel != 0 {
			ch = fmt.Sprintf(" (channel %d -> %d)", e.FromChannel, e.Channel)
		}
		return fmt.Sprintf("data from %s%s: %s", e.From, ch, payloadText(e.Bytes))
	case p2p.Status:
		if e.OK {
			return fmt.Sprintf("status %s #%d: ok", e.Peer, e.MsgID)
		}
		s := fmt.Sprintf("status %s #%d: failed: %s", e.Peer, e.MsgID, e.Reason)
		if e.Err != nil {
			s += " (" + errText(e.Err) + ")"
		}
		return s
	case p2p.Connected:
		addr := ""
		if e.Addr != nil {
			addr = " " + e.Addr.String()
		}
		return fmt.Sprintf("connected %s (%s%s)", e.Peer, direction(e.Inbound), addr)
	case p2p.Disconnected:
		return fmt.Sprintf("disconnected %s", e.Peer)
	case p2p.ConnectionLimit:
		who := "peer " + e.Peer.String()
		if e.Peer == "" {
			who = "ip " + e.IP.String()
		}
		return fmt.Sprintf("connection limit: %s cut off for %s until %s", who, e.Reason, formatTime(e.Until))
	case p2p.Error:
		if e.Peer != "" {
			return fmt.Sprintf("error: %s: %s", e.Peer, errText(e.Err))
		}
		return "error: " + errText(e.Err)
	case p2p.Dropped:
		return fmt.Sprintf("dropped %d messages from %s (receiver buffer full; last id %d)", e.Count, e.Peer, e.MsgID)
	case reloadedEvent:
		unit := "peers"
		if e.Kind == "routes" {
			unit = "rules"
		}
		return fmt.Sprintf("reloaded %s %s: %d %s", e.Kind, e.File, e.Count, unit)
	}
	if s := handlerText(ev); s != "" {
		return s
	}
	return fmt.Sprintf("error: unknown event %T", ev)
}

// renderEvent returns the output line of ev, newline included.
func renderEvent(ev any, asJSON bool) []byte {
	if !asJSON {
		return []byte(oneLine(toText(ev)) + "\n")
	}
	j := toJSON(ev)
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

// printer writes event lines. Events come from the run loop and from file
// watcher callbacks; the mutex makes each line one uninterrupted write.
type printer struct {
	mu     sync.Mutex
	w      io.Writer
	asJSON bool
}

func (p *printer) emit(ev any) {
	line := renderEvent(ev, p.asJSON)
	p.mu.Lock()
	defer p.mu.Unlock()
	// A failed write (stdout closed) cannot be reported anywhere useful;
	// the node keeps running, as it would with its output discarded.
	_, _ = p.w.Write(line)
}
