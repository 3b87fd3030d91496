package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// The outbox and deadletters commands: what a stopped node's store holds
// of the exchanges it started. They open the store themselves, so they
// refuse a running node's directory (the store has one user at a time).

const storeCmdsLong = `The store is found with --data-dir DIR, or from --key FILE (the default
data directory of the key's peer ID, as run uses it), or from the data_dir
or key of a run --config file. Exchange IDs are the 16 hex digits of the
exchange events. An ID that is not there fails the command (exit 1) and
nothing is changed.

list, deadletters retry and drop, and outbox drop work on a running node
too: they ask the node, through its control socket (control.sock in the
data directory, or --api), and open the store themselves only when no node
runs. Given none of --data-dir, --key, --config and --api, they ask the one
node running with a default data directory. outbox retry refuses a running node's data directory: stop the node
(SIGTERM), run it, start the node again.`

// storeTarget is how a store command finds its data directory.
type storeTarget struct {
	dataDir, key, config, api string
	asJSON                    bool
}

// bindStoreTarget defines the flags that find the store, and with withAPI
// --api, for the commands that may ask a running node (all but outbox
// retry, which a flag it ignored would mislead).
func bindStoreTarget(fs *pflag.FlagSet, t *storeTarget, withAPI bool) {
	if withAPI {
		fs.StringVar(&t.api, "api", "", "a running node's control `SOCKET` (default control.sock in the data directory)")
	}
	fs.StringVar(&t.dataDir, "data-dir", "", "the node's data `DIR`")
	fs.StringVar(&t.key, "key", "", "the node's identity key `FILE`: its default data directory")
	fs.StringVar(&t.config, "config", "", "the node's run configuration `FILE`: its data_dir, or its key's default")
	fs.BoolVar(&t.asJSON, "json", false, "print the result as JSON")
}

// dir resolves the data directory as run would for the same settings.
func (t *storeTarget) dir(fs *pflag.FlagSet) (string, error) {
	var cfg runConfig
	if t.config != "" {
		var err error
		if cfg, err = loadConfigFile(t.config); err != nil {
			return "", err
		}
	}
	if fs.Changed("data-dir") {
		cfg.DataDir = t.dataDir
	}
	if fs.Changed("key") {
		cfg.Key = t.key
	}
	switch {
	case cfg.DataDir != "":
		return absPath(cfg.DataDir), nil
	case cfg.Ephemeral:
		return "", usageErrorf("%s runs the node ephemeral: it has no data directory", t.config)
	case cfg.Key == "":
		return "", usageErrorf("no data directory: give --data-dir DIR, --key FILE (its default) or --config FILE")
	}
	k, err := loadKey(cfg.Key)
	if err != nil {
		return "", err
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		return "", err
	}
	return defaultDataDir(id)
}

// open resolves the data directory and opens its store: read-only for a
// command that only reads it (a list), which then writes nothing, and works
// on a full disk or a read-only file system.
func (t *storeTarget) open(cmd *cobra.Command, readOnly bool) (*store.Store, string, error) {
	dir, err := t.dir(cmd.Flags())
	if err != nil {
		return nil, "", err
	}
	st, err := openToolStore(dir, readOnly)
	return st, dir, err
}

// jsonStored is an exchange of the outbox or the dead letters, as the list
// commands print it.
type jsonStored struct {
	Exchange string `json:"exchange"`
	Peer     string `json:"peer"`
	Kind     string `json:"kind"`
	Tag      string `json:"tag,omitempty"` // run's stdin id
	Addr     string `json:"addr,omitempty"`
	Attempts int    `json:"attempts"`
	Reason   string `json:"reason,omitempty"` // dead letters only
	Error    string `json:"error,omitempty"`  // dead letters only
	Created  string `json:"created"`
	Failed   string `json:"failed,omitempty"` // dead letters only
	// Ended: an outbox exchange that is over, whose outcome the node had
	// not printed yet; the next run prints it (redelivered).
	Ended   string  `json:"ended,omitempty"`
	Size    int     `json:"size"`
	Data    *string `json:"data,omitempty"` // only if UTF-8
	DataB64 string  `json:"data_b64"`
}

func storedJSON(o store.Outgoing) jsonStored {
	text, b64 := payloadJSON(o.Payload)
	return jsonStored{Exchange: handler.ExchangeID(o.ID).String(), Peer: storedPeer(o.Peer), Kind: o.Kind.String(),
		Tag: o.Tag, Addr: o.Addr, Attempts: o.Attempts, Created: formatTime(o.Created), Size: len(o.Payload),
		Data: text, DataB64: b64, Ended: formatTime(o.Ended)}
}

func deadJSON(d store.DeadLetter) jsonStored {
	j := storedJSON(d.Outgoing)
	j.Reason, j.Error, j.Failed = d.Reason, oneLine(d.Error), formatTime(d.Failed)
	return j
}

// storedPeer is the text form of a peer ID as the store keeps it (its
// bytes).
func storedPeer(s string) string {
	id, err := peer.IDFromBytes([]byte(s))
	if err != nil {
		return fmt.Sprintf("(bad peer ID %x)", s)
	}
	return id.String()
}

// parseExchangeArgs parses exchange IDs, without repeats, in their order.
func parseExchangeArgs(args []string) ([]handler.ExchangeID, error) {
	var ids []handler.ExchangeID
	for _, a := range args {
		// All 16 digits, though ParseExchangeID takes fewer: a short one is
		// more likely a stdin "id" (7, 123) than an exchange's.
		id, err := handler.ParseExchangeID(a)
		if err != nil || len(a) != 16 {
			return nil, usageErrorf("%q is not an exchange ID (want the 16 hex digits of an exchange event, not its stdin \"id\")", a)
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// missing fails naming the ids that are not in where.
func missing(ids []handler.ExchangeID, has func(uint64) bool, where string) error {
	var bad []string
	for _, id := range ids {
		if !has(uint64(id)) {
			bad = append(bad, id.String())
		}
	}
	switch len(bad) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("exchange %s is not in %s: nothing changed", bad[0], where)
	}
	return fmt.Errorf("exchanges %s are not in %s: nothing changed", strings.Join(bad, ", "), where)
}

// change is what drop or retry does, for its report.
type change struct {
	action string // "drop" or "retry", in JSON
	from   string // "outbox" or "dead_letters", in JSON
	done   string // the text report, before the directory: "dropped from the outbox of"
	note   string // the text report's end
}

// print reports the change made to ids in dir.
func (c change) print(w io.Writer, asJSON bool, dir string, ids []handler.ExchangeID) error {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	if asJSON {
		return json.NewEncoder(w).Encode(map[string]any{"data_dir": dir, "action": c.action, "from": c.from, "exchanges": s})
	}
	if len(ids) == 0 {
		_, err := fmt.Fprintf(w, "%s: no %s, nothing to do\n", dir, strings.ReplaceAll(c.from, "_", " "))
		return err
	}
	_, err := fmt.Fprintf(w, "%s %s (%s): %s%s\n", c.done, dir, plural(len(ids), "exchange"), strings.Join(s, " "), c.note)
	return err
}

// encodeJSON writes v as one line, payload text readable ("<", not
// "\u003c").
func encodeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func tableTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// previewRunes bounds the payload shown in a table.
const previewRunes = 32

// preview shows the start of a payload on one table cell, from its first
// bytes (head: all of it, or at least headBytes), its size and whether it
// is all UTF-8: text quoted (so that spaces and tabs cannot break the
// columns), binary as such. A list sends only the head when the table is
// all it feeds.
func preview(head []byte, size int64, isText bool) string {
	if size == 0 {
		return "-"
	}
	if !isText {
		return "(binary)"
	}
	// A head cut inside a rune ends in RuneError, past the runes kept.
	runes := []rune(string(head))
	cut := size > int64(len(head)) || len(runes) > previewRunes
	if len(runes) > previewRunes {
		runes = runes[:previewRunes]
	}
	s := string(runes)
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) || cut {
		s = strconv.Quote(s)
	}
	if cut {
		s += "..."
	}
	return s
}

// jsonListSink prints a list as one JSON object, {"data_dir":..., key:[...]},
// an entry at a time as the list comes (entry makes each): the bytes that
// encodeJSON prints for the whole object, without holding it.
func jsonListSink(w io.Writer, key string, entry func(*pb.Stored) jsonStored) listSink {
	n := 0
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	write := func(v any, before string) error {
		buf.Reset()
		buf.WriteString(before)
		if err := enc.Encode(v); err != nil {
			return err
		}
		_, err := w.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
		return err
	}
	return listSink{
		begin: func(dir string) error { return write(dir, `{"data_dir":`) },
		item: func(s *pb.Stored) error {
			sep := ","
			if n++; n == 1 {
				sep = `,"` + key + `":[`
			}
			return write(entry(s), sep)
		},
		end: func() error {
			end := "]}\n"
			if n == 0 {
				end = `,"` + key + `":[]}` + "\n"
			}
			_, err := io.WriteString(w, end)
			return err
		},
	}
}
