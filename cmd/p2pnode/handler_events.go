package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/dht"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// The events of the exchange handler and the DHT, as run prints them. A
// handler.Request is printed as it comes; replies and outcomes are wrapped
// to carry the stdin id of the command that started them.

// replyEvent is a reply to one of our requests. ID is the id of the stdin
// request, 0 when the request came from elsewhere.
type replyEvent struct {
	handler.Reply
	ID uint64
}

// exchangeEvent is how an exchange ended. ID is the id of the stdin send or
// request that started it, 0 for an exchange a peer started.
type exchangeEvent struct {
	handler.Outcome
	ID uint64
}

// requestRefusedEvent is the error event of a stdin request the handler
// refused outright: it gets no reply and no exchange event, so its error
// carries the request's id, as a refused send's status does.
type requestRefusedEvent struct {
	Peer peer.ID
	ID   uint64
	Err  error
}

// dhtReadyEvent says the DHT's routing table has its first peer: lookups
// can start.
type dhtReadyEvent struct{ Peers int }

// publishedEvent says the node's DHT record was stored in the network.
type publishedEvent struct{ Record dht.Record }

// The JSON shapes; see events_json.go for the rules.
type (
	jsonRequest struct {
		Event       string  `json:"event"`
		From        string  `json:"from"`
		FromName    string  `json:"from_name,omitempty"`
		Exchange    string  `json:"exchange"`
		Data        *string `json:"data,omitempty"`
		DataB64     string  `json:"data_b64"`
		Redelivered bool    `json:"redelivered,omitempty"` // received by the previous process, never answered
	}
	jsonReply struct {
		Event       string  `json:"event"`
		From        string  `json:"from"`
		FromName    string  `json:"from_name,omitempty"`
		Exchange    string  `json:"exchange"`
		ID          uint64  `json:"id,omitempty"`
		Data        *string `json:"data,omitempty"`
		DataB64     string  `json:"data_b64"`
		Redelivered bool    `json:"redelivered,omitempty"` // printed by the previous process, which died before acknowledging its outcome
	}
	jsonExchange struct {
		Event    string  `json:"event"`
		Peer     string  `json:"peer"`
		PeerName string  `json:"peer_name,omitempty"`
		Exchange string  `json:"exchange"`
		ID       uint64  `json:"id,omitempty"`
		Kind     string  `json:"kind"`
		Role     string  `json:"role"`
		OK       bool    `json:"ok"`
		Reason   string  `json:"reason"`
		Stage    string  `json:"stage,omitempty"` // the state a failed exchange ended in
		Error    string  `json:"error,omitempty"`
		Attempts int     `json:"attempts"`
		Duration float64 `json:"duration_ms"`
		// Resumed: a previous process started it (and was stopped or
		// killed); DeadLettered: it failed and is kept in the dead letters
		// (p2pnode deadletters).
		Resumed      bool `json:"resumed,omitempty"`
		DeadLettered bool `json:"dead_lettered,omitempty"`
		// Redelivered: the previous process ended it and printed this
		// event, then died before acknowledging it: the same end again.
		Redelivered bool `json:"redelivered,omitempty"`
	}
	jsonDHTReady struct {
		Event string `json:"event"`
		Peers int    `json:"peers"`
	}
	jsonPublished struct {
		Event   string   `json:"event"`
		Addrs   []string `json:"addrs"`
		Seq     uint64   `json:"seq"`
		Expires string   `json:"expires"`
	}
)

// handlerJSON is toJSON for the events of this file; nil for others.
func handlerJSON(ev any, names namer) any {
	switch e := ev.(type) {
	case *handler.Request:
		text, b64 := payloadJSON(e.Data)
		return jsonRequest{"request", e.From.String(), names.of(e.From), e.Exchange.String(), text, b64, e.Redelivered}
	case *handler.Message:
		text, b64 := payloadJSON(e.Data)
		return jsonData{Event: "data", From: e.From.String(), FromName: names.of(e.From), Data: text, DataB64: b64, Redelivered: e.Redelivered}
	case replyEvent:
		text, b64 := payloadJSON(e.Data)
		return jsonReply{"reply", e.From.String(), names.of(e.From), e.Exchange.String(), e.ID, text, b64, e.Redelivered}
	case exchangeEvent:
		j := jsonExchange{Event: "exchange", Peer: e.Peer.String(), PeerName: names.of(e.Peer), Exchange: e.Exchange.String(), ID: e.ID,
			Kind: e.Kind.String(), Role: e.Role.String(), OK: e.OK, Reason: string(e.Reason),
			Attempts: e.Attempts, Duration: millis(e.Duration), Resumed: e.Resumed, DeadLettered: e.DeadLettered, Redelivered: e.Redelivered}
		if !e.OK {
			j.Stage, j.Error = string(e.Stage), errText(e.Err)
		}
		return j
	case requestRefusedEvent:
		id := e.ID
		return jsonError{Event: "error", Peer: e.Peer.String(), PeerName: names.of(e.Peer), ID: &id, Error: errText(e.Err)}
	case dhtReadyEvent:
		return jsonDHTReady{"dht_ready", e.Peers}
	case publishedEvent:
		return jsonPublished{"published", addrStrings(e.Record.Addrs), e.Record.Seq, formatTime(e.Record.Expires)}
	}
	return nil
}

// handlerText is toText for the events of this file; "" for others.
func handlerText(ev any, names namer) string {
	switch e := ev.(type) {
	case *handler.Request:
		return fmt.Sprintf("request from %s #%s%s: %s", names.text(e.From), e.Exchange, redeliveredText(e.Redelivered), payloadText(e.Data))
	case *handler.Message:
		return fmt.Sprintf("data from %s%s: %s", names.text(e.From), redeliveredText(e.Redelivered), payloadText(e.Data))
	case replyEvent:
		return fmt.Sprintf("reply from %s #%s%s%s: %s", names.text(e.From), e.Exchange, idText(e.ID), redeliveredText(e.Redelivered), payloadText(e.Data))
	case exchangeEvent:
		id := ""
		if e.ID != 0 {
			id = fmt.Sprintf(", id %d", e.ID)
		}
		if e.Redelivered {
			id += ", redelivered"
		} else if e.Resumed {
			id += ", resumed"
		}
		s := fmt.Sprintf("exchange %s #%s (%s, %s%s): ", names.text(e.Peer), e.Exchange, e.Kind, e.Role, id)
		if e.OK {
			return s + fmt.Sprintf("ok in %s", e.Duration.Round(10*time.Microsecond))
		}
		s += fmt.Sprintf("failed: %s in %s after %s", e.Reason, e.Stage, plural(e.Attempts, "attempt"))
		if e.Err != nil {
			s += " (" + errText(e.Err) + ")"
		}
		if e.DeadLettered {
			s += "; kept in the dead letters"
		}
		return s
	case requestRefusedEvent:
		return fmt.Sprintf("error: %s: %s", names.text(e.Peer), errText(e.Err))
	case dhtReadyEvent:
		return fmt.Sprintf("dht ready: %d peers in the routing table", e.Peers)
	case publishedEvent:
		return fmt.Sprintf("dht record published: %s, expires %s",
			strings.Join(addrStrings(e.Record.Addrs), " "), formatTime(e.Record.Expires))
	}
	return ""
}

// sendStatus is the status event of a stdin send, from its exchange's
// outcome. The reason is the p2p layer's when the handler has one (busy,
// rejected, not_routed... as before the handler), else the handler's.
func sendStatus(o handler.Outcome, id uint64) p2p.Status {
	st := p2p.Status{Peer: o.Peer, MsgID: id, OK: o.OK, Reason: p2p.Reason(o.Reason), Err: o.Err}
	if ae, ok := errors.AsType[*handler.AckError](o.Err); ok {
		st.Reason = ae.Reason
	}
	return st
}

// refusedStatus is the status event of a stdin send the handler refused
// outright.
func refusedStatus(p peer.ID, id uint64, err error) p2p.Status {
	r := p2p.ReasonRejected
	switch {
	case errors.Is(err, handler.ErrTooLarge):
		r = p2p.ReasonTooLarge
	case errors.Is(err, handler.ErrClosed):
		r = p2p.ReasonClosed
	}
	return p2p.Status{Peer: p, MsgID: id, Reason: r, Err: err}
}

// payloadJSON is a payload's "data" (only when it is UTF-8) and "data_b64".
func payloadJSON(b []byte) (*string, string) {
	b64 := base64.StdEncoding.EncodeToString(b)
	if !utf8.Valid(b) {
		return nil, b64
	}
	s := string(b)
	return &s, b64
}

func redeliveredText(r bool) string {
	if r {
		return " (redelivered)"
	}
	return ""
}

func idText(id uint64) string {
	if id == 0 {
		return ""
	}
	return fmt.Sprintf(" (id %d)", id)
}

func millis(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

func addrStrings(addrs []ma.Multiaddr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}
