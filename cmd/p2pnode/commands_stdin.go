package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// stdinCommand is one line of "run"'s stdin:
//
//	{"cmd":"dial","peer":"<id>","addr":"<multiaddr>"}
//	{"cmd":"send","peer":"<id>","addr":"<multiaddr>","data":"<text>","id":7}
//	{"cmd":"send","peer":"<id>","data_b64":"<base64>"}
//	{"cmd":"request","peer":"<id>","addr":"<multiaddr>","data":"<text>","id":8}
//	{"cmd":"respond","peer":"<id>","exchange":"<exchange id>","data":"<text>"}
//	{"cmd":"disconnect","peer":"<id>"}
//
// "addr" may end in /p2p/<id>, and then "peer" may be left out. The "id" of
// a send or request is optional (the CLI numbers those without one) and
// comes back in its status and exchange events; it is positive, as 0 is
// what the events of an exchange not started on stdin carry (or, in reply
// and exchange events, no "id" at all). "channel" and "from_channel" are
// optional too.
type stdinCommand struct {
	Cmd         string  `json:"cmd"`
	Peer        string  `json:"peer"`
	Addr        string  `json:"addr"`
	Data        *string `json:"data"`
	DataB64     *string `json:"data_b64"`
	ID          *uint64 `json:"id"`
	Channel     uint32  `json:"channel"`
	FromChannel uint32  `json:"from_channel"`
	Exchange    string  `json:"exchange"`
}

// requestCmd asks a peer something: a handler request, whose reply and
// outcome carry ID.
type requestCmd struct {
	Peer peer.ID
	Addr ma.Multiaddr
	ID   uint64
	Data []byte
}

// respondCmd answers the request Exchange that Peer sent.
type respondCmd struct {
	Peer     peer.ID
	Exchange handler.ExchangeID
	Data     []byte
}

// commandParser turns stdin lines into commands: p2p.Dial, p2p.SendMsg,
// p2p.DisconnectFrom, requestCmd or respondCmd. It numbers the sends and
// requests that carry no id; it belongs to the run loop and is not safe
// for concurrent use.
type commandParser struct {
	line   int    // lines read so far, for error messages
	nextID uint64 // next id for a send without one; 0 means 1
}

// parse decodes one line. A blank line is no command (nil, nil). Errors say
// which stdin line was at fault and why.
func (p *commandParser) parse(line []byte) (any, error) {
	p.line++
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, nil
	}
	cmd, err := p.decode(line)
	if err != nil {
		return nil, fmt.Errorf("stdin line %d: %w", p.line, err)
	}
	return cmd, nil
}

func (p *commandParser) decode(line []byte) (any, error) {
	// encoding/json would replace each invalid byte of a string with
	// U+FFFD: a "data" written in Latin-1, say, would reach the peer as
	// other bytes than the script wrote, without a word.
	if !utf8.Valid(line) {
		return nil, errors.New(`not UTF-8 (JSON text is UTF-8; send bytes that are not as "data_b64")`)
	}
	var c stdinCommand
	dec := json.NewDecoder(bytes.NewReader(line))
	// A misspelt key ("peerid", "payload") must be an error, not an
	// ignored field and a command that does something else.
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, jsonErr(err)
	}
	// More is false before a "}" or "]": only the end of the line may
	// follow the object.
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("one JSON object per line: unexpected text after the object")
	}
	// The command first: a line without one is wrong for that reason.
	switch c.Cmd {
	case "dial", "send", "request", "respond", "disconnect":
	case "":
		return nil, errors.New(`no "cmd" (want ` + stdinCommands + `)`)
	default:
		return nil, fmt.Errorf(`unknown cmd %q (want `+stdinCommands+`)`, c.Cmd)
	}
	id, addr, err := c.target()
	if err != nil {
		return nil, err
	}
	switch c.Cmd {
	case "dial":
		if addr == nil {
			return nil, errors.New(`dial needs "addr"`)
		}
		if err := c.only("dial", "data", "data_b64", "id", "channel", "exchange"); err != nil {
			return nil, err
		}
		return p2p.Dial{Peer: id, Addr: addr}, nil
	case "send":
		if err := c.only("send", "exchange"); err != nil {
			return nil, err
		}
		if err := c.checkID(); err != nil {
			return nil, err
		}
		data, err := c.payload()
		if err != nil {
			return nil, err
		}
		msg := p2p.SendMsg{Peer: id, Addr: addr, Data: data, Channel: c.Channel, FromChannel: c.FromChannel}
		msg.ID = p.assignID(c.ID)
		return msg, nil
	case "request":
		if err := c.only("request", "channel", "exchange"); err != nil {
			return nil, err
		}
		if err := c.checkID(); err != nil {
			return nil, err
		}
		data, err := c.payload()
		if err != nil {
			return nil, err
		}
		return requestCmd{Peer: id, Addr: addr, ID: p.assignID(c.ID), Data: data}, nil
	case "respond":
		if err := c.only("respond", "addr", "id", "channel"); err != nil {
			return nil, err
		}
		if c.Exchange == "" {
			return nil, errors.New(`respond needs "exchange" (from the request event)`)
		}
		ex, err := handler.ParseExchangeID(c.Exchange)
		if err != nil {
			return nil, fmt.Errorf("exchange %q: want the 16 hex digits of a request event", c.Exchange)
		}
		data, err := c.payload()
		if err != nil {
			return nil, err
		}
		return respondCmd{Peer: id, Exchange: ex, Data: data}, nil
	case "disconnect":
		if err := c.only("disconnect", "addr", "data", "data_b64", "id", "channel", "exchange"); err != nil {
			return nil, err
		}
		return p2p.DisconnectFrom{Peer: id}, nil
	}
	return nil, fmt.Errorf(`unknown cmd %q (want `+stdinCommands+`)`, c.Cmd) // checked above
}

// stdinCommands names the commands, for errors.
const stdinCommands = "dial, send, request, respond or disconnect"

// target decodes "peer" and "addr". The peer is required: with no peer,
// p2p.DisconnectFrom would stop the node, which is what closing stdin is for.
func (c *stdinCommand) target() (peer.ID, ma.Multiaddr, error) {
	var (
		id   peer.ID
		addr ma.Multiaddr
		err  error
	)
	if c.Peer != "" {
		if id, err = peer.Decode(c.Peer); err != nil {
			return "", nil, fmt.Errorf("peer %q is not a peer ID", c.Peer)
		}
	}
	if c.Addr != "" {
		if addr, err = ma.NewMultiaddr(c.Addr); err != nil {
			return "", nil, fmt.Errorf("addr %q is not a multiaddr: %v", c.Addr, err)
		}
		// An address of the form .../p2p/<id> names its peer.
		if _, addrID := peer.SplitAddr(addr); addrID != "" {
			if id == "" {
				id = addrID
			} else if addrID != id {
				return "", nil, fmt.Errorf("addr %s belongs to peer %s, not %s", c.Addr, addrID, id)
			}
		}
	}
	if id == "" {
		return "", nil, errors.New(`no "peer" (a peer ID, or an "addr" ending in /p2p/<id>)`)
	}
	return id, addr, nil
}

// payload returns the data of a send: exactly one of "data" (text) and
// "data_b64" (base64 of any bytes). An empty payload is allowed.
func (c *stdinCommand) payload() ([]byte, error) {
	switch {
	case c.Data != nil && c.DataB64 != nil:
		return nil, errors.New(`give "data" or "data_b64", not both`)
	case c.Data != nil:
		return []byte(*c.Data), nil
	case c.DataB64 != nil:
		b, err := base64.StdEncoding.DecodeString(*c.DataB64)
		if err != nil {
			return nil, fmt.Errorf("data_b64 is not base64: %v", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf(`%s needs "data" or "data_b64"`, c.Cmd)
}

// only refuses the fields that mean nothing to cmd, so that a line does not
// look as if it did something it did not (a dial with data sends nothing).
func (c *stdinCommand) only(cmd string, unused ...string) error {
	set := map[string]bool{
		"addr":     c.Addr != "",
		"data":     c.Data != nil,
		"data_b64": c.DataB64 != nil,
		"id":       c.ID != nil,
		"channel":  c.Channel != 0 || c.FromChannel != 0,
		"exchange": c.Exchange != "",
	}
	for _, f := range unused {
		if set[f] {
			return fmt.Errorf("%s takes no %q", cmd, f)
		}
	}
	return nil
}

// checkID refuses an explicit "id" of 0. Zero is the id of the exchanges
// that did not come from stdin (control API sends, whose status event says
// "id":0 and whose reply and exchange events have no "id"): a stdin
// command given it could not be told from them, and its reply and
// exchange events would lose the id the script matches them by.
//
// Ids stop at maxStdinID: numbering continues after the largest id given,
// and after 2^64-1 it would wrap around to 1 and repeat ids in use.
func (c *stdinCommand) checkID() error {
	switch {
	case c.ID == nil:
	case *c.ID == 0:
		return errors.New(`"id" must be positive (0 is no id: leave "id" out and p2pnode numbers the command)`)
	case *c.ID > maxStdinID:
		return fmt.Errorf(`"id" must be at most %d`, uint64(maxStdinID))
	}
	return nil
}

// maxStdinID is the largest stdin id: the largest int64, which scripts
// in most languages read back exactly, and far enough from 2^64 that the
// numbering after it never wraps around.
const maxStdinID = math.MaxInt64

// assignID returns the id of a send: the one given, or the next number.
// Numbering continues after the largest id given, so that an automatic id
// never repeats an earlier explicit one.
func (p *commandParser) assignID(given *uint64) uint64 {
	if p.nextID == 0 {
		p.nextID = 1
	}
	if given != nil {
		if *given >= p.nextID {
			p.nextID = *given + 1
		}
		return *given
	}
	id := p.nextID
	p.nextID++
	return id
}

// jsonErr rewrites encoding/json's errors without Go type names.
func jsonErr(err error) error {
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if te.Field == "" {
			return fmt.Errorf("want a JSON object, got %s", te.Value)
		}
		return fmt.Errorf("%q: wrong type (%s)", te.Field, te.Value)
	}
	if _, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Errorf("not JSON: %v", err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("not JSON: truncated object")
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

// stdinLine is one line read from stdin, or the error that ended reading.
type stdinLine struct {
	text []byte
	err  error // errLineTooLong, or a read error (the reader then stops)
}

var errLineTooLong = errors.New("line too long")

// stdinReader owns the goroutine that reads stdin line by line. The lines
// channel is closed at end of input.
//
// A read from stdin cannot be interrupted, so stop cannot wait for the
// goroutine: stop tells it to deliver nothing more and to return as soon as
// its current read does. If that read never returns (a terminal nobody
// types into), the goroutine is abandoned to process exit, which follows
// stop at once in p2pnode; it holds nothing that needs cleaning up.
type stdinReader struct {
	lines <-chan stdinLine
	done  chan struct{}
}

// startStdinReader starts reading r. Lines longer than maxLine bytes are
// skipped and reported with errLineTooLong, so a runaway writer cannot make
// the node buffer without bound.
func startStdinReader(r io.Reader, maxLine int) *stdinReader {
	lines := make(chan stdinLine)
	s := &stdinReader{lines: lines, done: make(chan struct{})}
	go func() {
		defer close(lines)
		br := bufio.NewReaderSize(r, 64<<10)
		for {
			text, err := readLine(br, maxLine)
			if err == io.EOF && len(text) == 0 {
				return
			}
			l := stdinLine{text: text}
			if err != nil && err != io.EOF {
				l.err = err
			}
			// Checked first because a select between a ready send and a
			// closed done picks at random.
			select {
			case <-s.done:
				return
			default:
			}
			select {
			case lines <- l:
			case <-s.done:
				return
			}
			if err != nil && err != errLineTooLong {
				return
			}
		}
	}()
	return s
}

// stop ends the reader; see stdinReader.
func (s *stdinReader) stop() { close(s.done) }

// readLine reads one line without its end of line. A line over max bytes is
// consumed to its end and returned empty with errLineTooLong. The last line
// of the input may lack its newline; it comes with io.EOF.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > max+1 { // +1: the newline
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case tooLong && (err == nil || err == io.EOF):
			return nil, errLineTooLong
		case err != nil:
			return line, err
		}
		return bytes.TrimRight(line, "\r\n"), nil
	}
}

// badLineEvent is the error event of a stdin line that is no valid
// command but names its "id": the event carries the id, so that a script
// can tell which of its commands failed.
type badLineEvent struct {
	ID  uint64
	Err error
}

// lineID is the "id" a stdin line names, however wrong the rest of it: 0
// when it names none, or none that is valid.
func lineID(line []byte) uint64 {
	var probe struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(line, &probe) != nil || len(probe.ID) == 0 {
		return 0
	}
	var id uint64
	if json.Unmarshal(probe.ID, &id) != nil || id > math.MaxInt64 {
		return 0
	}
	return id
}
