package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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

A running node owns its store: these commands refuse its data directory.
Stop the node (SIGTERM), change the store, start it again.`

// storeTarget is how a store command finds its data directory.
type storeTarget struct {
	dataDir, key, config string
	asJSON               bool
}

func bindStoreTarget(fs *pflag.FlagSet, t *storeTarget) {
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
		return "", usageErrorf("no data directory: give --data-dir DIR, or --key FILE for its default")
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

// open resolves the data directory and opens its store.
func (t *storeTarget) open(cmd *cobra.Command) (*store.Store, string, error) {
	dir, err := t.dir(cmd.Flags())
	if err != nil {
		return nil, "", err
	}
	st, err := openToolStore(dir)
	return st, dir, err
}

// jsonStored is an exchange of the outbox or the dead letters, as the list
// commands print it.
type jsonStored struct {
	Exchange string  `json:"exchange"`
	Peer     string  `json:"peer"`
	Kind     string  `json:"kind"`
	Tag      string  `json:"tag,omitempty"` // run's stdin id
	Addr     string  `json:"addr,omitempty"`
	Attempts int     `json:"attempts"`
	Reason   string  `json:"reason,omitempty"` // dead letters only
	Error    string  `json:"error,omitempty"`  // dead letters only
	Created  string  `json:"created"`
	Failed   string  `json:"failed,omitempty"` // dead letters only
	Size     int     `json:"size"`
	Data     *string `json:"data,omitempty"` // only if UTF-8
	DataB64  string  `json:"data_b64"`
}

func storedJSON(o store.Outgoing) jsonStored {
	text, b64 := payloadJSON(o.Payload)
	return jsonStored{Exchange: handler.ExchangeID(o.ID).String(), Peer: storedPeer(o.Peer), Kind: o.Kind.String(),
		Tag: o.Tag, Addr: o.Addr, Attempts: o.Attempts, Created: formatTime(o.Created), Size: len(o.Payload),
		Data: text, DataB64: b64}
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
		id, err := handler.ParseExchangeID(a)
		if err != nil {
			return nil, usageErrorf("%q is not an exchange ID (want the 16 hex digits of an exchange event)", a)
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

// newOutboxCmd builds "outbox" and its subcommands.
func newOutboxCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "outbox",
		Short: "List, drop or retry the exchanges a stopped node will resume",
		Long: `The outbox holds the exchanges a node started (stdin send and request) and
had not finished when it stopped or was killed: the next "p2pnode run" on
the same data directory resumes them, with their exchange ID, their stdin id
and their attempt count.

` + storeCmdsLong,
		Example: `  p2pnode outbox list --key node.key
  p2pnode outbox list --data-dir /var/lib/p2pnode --json
  p2pnode outbox drop --data-dir /var/lib/p2pnode 3f2a9c0d4e5b6a71
  p2pnode outbox retry --config /etc/p2pnode/p2pnode.yaml 3f2a9c0d4e5b6a71`,
	}
	asGroup(cmd)
	cmd.AddCommand(newOutboxListCmd(a), newOutboxDropCmd(a), newOutboxRetryCmd(a))
	return cmd
}

func newOutboxListCmd(a *app) *cobra.Command {
	var t storeTarget
	cmd := &cobra.Command{
		Use:   "list (--data-dir DIR | --key FILE | --config FILE)",
		Short: "List the exchanges a stopped node will resume",
		Long: `list prints the outbox: each exchange's ID, peer, kind, tag (run's stdin id),
attempts so far, when it was started, and its payload (size and start; all
of it with --json).`,
		Example: `  p2pnode outbox list --key node.key
  p2pnode outbox list --data-dir /var/lib/p2pnode --json`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, dir, err := t.open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			out, err := st.OutgoingList()
			if err != nil {
				return err
			}
			slices.SortStableFunc(out, func(x, y store.Outgoing) int { return x.Created.Compare(y.Created) })
			if t.asJSON {
				j := struct {
					DataDir string       `json:"data_dir"`
					Outbox  []jsonStored `json:"outbox"`
				}{dir, []jsonStored{}}
				for _, o := range out {
					j.Outbox = append(j.Outbox, storedJSON(o))
				}
				return encodeJSON(a.out, j)
			}
			if len(out) == 0 {
				_, err := fmt.Fprintf(a.out, "%s: the outbox is empty\n", dir)
				return err
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "EXCHANGE\tPEER\tKIND\tTAG\tATTEMPTS\tCREATED\tSIZE\tPAYLOAD")
			for _, o := range out {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", handler.ExchangeID(o.ID), storedPeer(o.Peer), o.Kind,
					dash(o.Tag), o.Attempts, tableTime(o.Created), len(o.Payload), preview(o.Payload))
			}
			return tw.Flush()
		},
	}
	bindStoreTarget(cmd.Flags(), &t)
	return cmd
}

func newOutboxDropCmd(a *app) *cobra.Command {
	var t storeTarget
	cmd := &cobra.Command{
		Use:   "drop (--data-dir DIR | --key FILE | --config FILE) EXCHANGE...",
		Short: "Remove exchanges from the outbox: they will not resume",
		Long: `drop removes exchanges from the outbox: the next run does not resume them,
and they get no event. A peer may have received them already.`,
		Example: `  p2pnode outbox drop --key node.key 3f2a9c0d4e5b6a71
  p2pnode outbox drop --data-dir /var/lib/p2pnode 3f2a9c0d4e5b6a71 00c0ffee00c0ffee --json`,
		Args: checkArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := change{"drop", "outbox", "dropped from the outbox of", "; they will not resume"}
			return changeOutbox(a, cmd, &t, args, c, func(b *store.Batch, o store.Outgoing) {
				b.DeleteOutgoing(o.ID)
			})
		},
	}
	bindStoreTarget(cmd.Flags(), &t)
	return cmd
}

func newOutboxRetryCmd(a *app) *cobra.Command {
	var t storeTarget
	cmd := &cobra.Command{
		Use:   "retry (--data-dir DIR | --key FILE | --config FILE) EXCHANGE...",
		Short: "Reset the attempt count of exchanges in the outbox",
		Long: `retry sets the attempts of exchanges in the outbox back to 0: the next run
resumes them with the full --max-attempts.`,
		Example: `  p2pnode outbox retry --key node.key 3f2a9c0d4e5b6a71`,
		Args:    checkArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := change{"retry", "outbox", "attempts reset to 0 in the outbox of", ""}
			return changeOutbox(a, cmd, &t, args, c, func(b *store.Batch, o store.Outgoing) {
				o.Attempts = 0
				b.PutOutgoing(o)
			})
		},
	}
	bindStoreTarget(cmd.Flags(), &t)
	return cmd
}

// changeOutbox applies change to each outbox exchange named in args, in
// one batch, once all of them are known to be there.
func changeOutbox(a *app, cmd *cobra.Command, t *storeTarget, args []string, c change,
	apply func(*store.Batch, store.Outgoing)) error {
	ids, err := parseExchangeArgs(args)
	if err != nil {
		return err
	}
	st, dir, err := t.open(cmd)
	if err != nil {
		return err
	}
	defer st.Close()
	out, err := st.OutgoingList()
	if err != nil {
		return err
	}
	byID := make(map[uint64]store.Outgoing, len(out))
	for _, o := range out {
		byID[o.ID] = o
	}
	has := func(id uint64) bool { _, ok := byID[id]; return ok }
	if err := missing(ids, has, "the outbox of "+dir); err != nil {
		return err
	}
	var b store.Batch
	for _, id := range ids {
		apply(&b, byID[uint64(id)])
	}
	if err := st.Commit(&b); err != nil {
		return err
	}
	return c.print(a.out, t.asJSON, dir, ids)
}

// newDeadLettersCmd builds "deadletters" and its subcommands.
func newDeadLettersCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deadletters",
		Short: "List, retry or drop the exchanges a node gave up on",
		Long: `A node keeps in its dead letters every exchange it started that failed for
good (its exchange event has "dead_lettered": true): the request or
message, its peer, tag (run's stdin id), attempts, and why it failed.
retry moves them back to the outbox, with their exchange ID and attempts 0:
the next "p2pnode run" on the data directory resumes them. A peer that
still remembers the exchange (by default for 10 minutes) answers it from
its memory; after that it handles it as new. drop forgets them.

` + storeCmdsLong,
		Example: `  p2pnode deadletters list --key node.key
  p2pnode deadletters list --data-dir /var/lib/p2pnode --json
  p2pnode deadletters retry --data-dir /var/lib/p2pnode 3f2a9c0d4e5b6a71
  p2pnode deadletters drop --key node.key --all`,
	}
	asGroup(cmd)
	cmd.AddCommand(newDeadLettersListCmd(a), newDeadLettersRetryCmd(a), newDeadLettersDropCmd(a))
	return cmd
}

func newDeadLettersListCmd(a *app) *cobra.Command {
	var t storeTarget
	cmd := &cobra.Command{
		Use:   "list (--data-dir DIR | --key FILE | --config FILE)",
		Short: "List the exchanges a node gave up on",
		Long: `list prints the dead letters: each exchange's ID, peer, kind, tag (run's
stdin id), attempts, the reason and error it failed with, when it was
started and when it failed; --json adds the address and the payload.`,
		Example: `  p2pnode deadletters list --key node.key
  p2pnode deadletters list --data-dir /var/lib/p2pnode --json`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, dir, err := t.open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			dls, err := st.DeadLetters()
			if err != nil {
				return err
			}
			slices.SortStableFunc(dls, func(x, y store.DeadLetter) int { return x.Failed.Compare(y.Failed) })
			if t.asJSON {
				j := struct {
					DataDir     string       `json:"data_dir"`
					DeadLetters []jsonStored `json:"dead_letters"`
				}{dir, []jsonStored{}}
				for _, d := range dls {
					j.DeadLetters = append(j.DeadLetters, deadJSON(d))
				}
				return encodeJSON(a.out, j)
			}
			if len(dls) == 0 {
				_, err := fmt.Fprintf(a.out, "%s: no dead letters\n", dir)
				return err
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "EXCHANGE\tPEER\tKIND\tTAG\tATTEMPTS\tREASON\tCREATED\tFAILED\tERROR")
			for _, d := range dls {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", handler.ExchangeID(d.ID), storedPeer(d.Peer), d.Kind,
					dash(d.Tag), d.Attempts, d.Reason, tableTime(d.Created), tableTime(d.Failed), dash(oneLine(d.Error)))
			}
			return tw.Flush()
		},
	}
	bindStoreTarget(cmd.Flags(), &t)
	return cmd
}

func newDeadLettersRetryCmd(a *app) *cobra.Command {
	var (
		t   storeTarget
		all bool
	)
	cmd := &cobra.Command{
		Use:   "retry (--data-dir DIR | --key FILE | --config FILE) (EXCHANGE... | --all)",
		Short: "Move dead letters back to the outbox: the next run resumes them",
		Long: `retry moves dead letters back to the outbox with attempts 0. They keep their
exchange ID, tag and payload; the next "p2pnode run" on the data directory
resumes them and prints their events, marked "resumed".`,
		Example: `  p2pnode deadletters retry --key node.key 3f2a9c0d4e5b6a71
  p2pnode deadletters retry --data-dir /var/lib/p2pnode --all --json`,
		Args: checkArgs(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := change{"retry", "dead_letters", "moved to the outbox, attempts 0, from the dead letters of",
				"; the next run on it resumes them"}
			return changeDeadLetters(a, cmd, &t, args, all, c, func(b *store.Batch, d store.DeadLetter) {
				o := d.Outgoing
				o.Attempts = 0
				b.PutOutgoing(o)
				b.DeleteDeadLetter(d.ID)
			})
		},
	}
	bindStoreTarget(cmd.Flags(), &t)
	cmd.Flags().BoolVar(&all, "all", false, "every dead letter")
	return cmd
}

func newDeadLettersDropCmd(a *app) *cobra.Command {
	var (
		t   storeTarget
		all bool
	)
	cmd := &cobra.Command{
		Use:   "drop (--data-dir DIR | --key FILE | --config FILE) (EXCHANGE... | --all)",
		Short: "Forget dead letters",
		Example: `  p2pnode deadletters drop --key node.key 3f2a9c0d4e5b6a71
  p2pnode deadletters drop --data-dir /var/lib/p2pnode --all`,
		Args: checkArgs(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := change{"drop", "dead_letters", "dropped from the dead letters of", ""}
			return changeDeadLetters(a, cmd, &t, args, all, c, func(b *store.Batch, d store.DeadLetter) {
				b.DeleteDeadLetter(d.ID)
			})
		},
	}
	bindStoreTarget(cmd.Flags(), &t)
	cmd.Flags().BoolVar(&all, "all", false, "every dead letter")
	return cmd
}

// changeDeadLetters applies change to each dead letter named in args (or
// all of them), in one batch, once all of them are known to be there.
func changeDeadLetters(a *app, cmd *cobra.Command, t *storeTarget, args []string, all bool, c change,
	apply func(*store.Batch, store.DeadLetter)) error {
	switch {
	case all && len(args) > 0:
		return usageErrorf("give exchange IDs or --all, not both")
	case !all && len(args) == 0:
		return usageErrorf("give the exchange IDs (from deadletters list), or --all")
	}
	ids, err := parseExchangeArgs(args)
	if err != nil {
		return err
	}
	st, dir, err := t.open(cmd)
	if err != nil {
		return err
	}
	defer st.Close()
	dls, err := st.DeadLetters()
	if err != nil {
		return err
	}
	byID := make(map[uint64]store.DeadLetter, len(dls))
	for _, d := range dls {
		byID[d.ID] = d
		if all {
			ids = append(ids, handler.ExchangeID(d.ID))
		}
	}
	has := func(id uint64) bool { _, ok := byID[id]; return ok }
	if err := missing(ids, has, "the dead letters of "+dir); err != nil {
		return err
	}
	if len(ids) > 0 {
		var b store.Batch
		for _, id := range ids {
			apply(&b, byID[uint64(id)])
		}
		if err := st.Commit(&b); err != nil {
			return err
		}
	}
	return c.print(a.out, t.asJSON, dir, ids)
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

// preview shows the start of a payload on one table cell: text quoted
// (so that spaces and tabs cannot break the columns), binary as its size.
func preview(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	if !utf8.Valid(b) {
		return "(binary)"
	}
	s := string(b)
	cut := false
	if utf8.RuneCountInString(s) > previewRunes {
		s, cut = string([]rune(s)[:previewRunes]), true
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) || cut {
		s = strconv.Quote(s)
	}
	if cut {
		s += "..."
	}
	return s
}
