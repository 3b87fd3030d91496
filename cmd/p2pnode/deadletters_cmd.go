package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// newDeadLettersCmd builds "deadletters" and its subcommands.
func newDeadLettersCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deadletters",
		Short: "List, retry or drop the exchanges a node gave up on",
		Long: `A node keeps in its dead letters every exchange it started that failed for
good (its exchange event has "dead_lettered": true): the request or
message, its peer, tag (run's stdin id), attempts, and why it failed.
retry moves them back to the outbox, with their exchange ID, creation time
and attempts 0: a running node starts them again at once, a stopped node's
next "p2pnode run" resumes them. A peer that still remembers the exchange
(by default for 10 minutes) answers a request with the reply it stored;
one its application left unanswered it refuses, and the exchange fails
again at once with the reason "unanswered" (send it anew); after that it
handles it as new. drop forgets them. retry and drop go through the running node's
control socket when it runs, and change the store itself when it does
not.

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
		Use:   "list (--data-dir DIR | --key FILE | --config FILE | --api SOCKET)",
		Short: "List the exchanges a node gave up on (running or stopped)",
		Long: `list prints the dead letters: each exchange's ID, peer, kind, tag (run's
stdin id; api-<hex>-N for one started through the control API), attempts, the reason and error it failed with, when it was
started and when it failed; --json adds the address and the payload. In
the order they failed, the earliest first; the list is read one exchange
at a time, as outbox list's is.`,
		Example: `  p2pnode deadletters list --key node.key
  p2pnode deadletters list --data-dir /var/lib/p2pnode --json`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			open := func() (*store.Store, string, error) { return t.open(cmd, true) }
			if t.asJSON {
				return t.listStored(true, true, open, jsonListSink(a.out, "dead_letters", func(s *pb.Stored) jsonStored {
					return deadJSON(deadLetterOf(s))
				}))
			}
			var (
				dir string
				tw  *tabwriter.Writer
			)
			return t.listStored(true, false, open, listSink{
				begin: func(d string) error { dir = d; return nil },
				item: func(s *pb.Stored) error {
					if tw == nil {
						tw = tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "EXCHANGE\tPEER\tKIND\tTAG\tATTEMPTS\tREASON\tCREATED\tFAILED\tERROR")
					}
					_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", handler.ExchangeID(s.Id), storedPeer(string(s.Peer)),
						store.Kind(s.Kind), dash(s.Tag), s.Attempts, s.Reason, tableTime(unixNs(s.CreatedUnixNs)),
						tableTime(unixNs(s.EndedUnixNs)), dash(oneLine(s.Error)))
					return err
				},
				end: func() error {
					if tw == nil {
						_, err := fmt.Fprintf(a.out, "%s: no dead letters\n", dir)
						return err
					}
					return tw.Flush()
				},
			})
		},
	}
	bindStoreTarget(cmd.Flags(), &t, true)
	return cmd
}

func newDeadLettersRetryCmd(a *app) *cobra.Command {
	var (
		t   storeTarget
		all bool
	)
	cmd := &cobra.Command{
		Use:   "retry (--data-dir DIR | --key FILE | --config FILE | --api SOCKET) (EXCHANGE... | --all)",
		Short: "Run dead letters again (a running node at once, a stopped one at its next run)",
		Long: `retry moves dead letters back to the outbox with attempts 0. They keep their
exchange ID, tag and payload. A running node starts them at once and prints
their events; a stopped node's next "p2pnode run" on the data directory
resumes them and prints their events, marked "resumed".`,
		Example: `  p2pnode deadletters retry --key node.key 3f2a9c0d4e5b6a71
  p2pnode deadletters retry --data-dir /var/lib/p2pnode --all --json`,
		Args: checkArgs(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := change{"retry", "dead_letters", "moved to the outbox, attempts 0, from the dead letters of",
				"; the next run on it resumes them"}
			ch := nodeChange{call: func(ctx context.Context, c *control.Client, ids []uint64) (*pb.ExchangesResponse, error) {
				return c.RetryDeadLetters(ctx, ids)
			}, all: nodeDeadLetterIDs}
			return changeDeadLetters(a, cmd, &t, args, all, c, ch, "; the node runs them now", func(b *store.Batch, d store.DeadLetter) {
				o := d.Outgoing
				o.Attempts = 0
				b.PutOutgoing(o)
				b.DeleteDeadLetter(d.ID)
			})
		},
	}
	bindStoreTarget(cmd.Flags(), &t, true)
	cmd.Flags().BoolVar(&all, "all", false, "every dead letter")
	return cmd
}

func newDeadLettersDropCmd(a *app) *cobra.Command {
	var (
		t   storeTarget
		all bool
	)
	cmd := &cobra.Command{
		Use:   "drop (--data-dir DIR | --key FILE | --config FILE | --api SOCKET) (EXCHANGE... | --all)",
		Short: "Forget dead letters",
		Example: `  p2pnode deadletters drop --key node.key 3f2a9c0d4e5b6a71
  p2pnode deadletters drop --data-dir /var/lib/p2pnode --all`,
		Args: checkArgs(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := change{"drop", "dead_letters", "dropped from the dead letters of", ""}
			ch := nodeChange{call: func(ctx context.Context, c *control.Client, ids []uint64) (*pb.ExchangesResponse, error) {
				return c.DropDeadLetters(ctx, ids)
			}, all: nodeDeadLetterIDs}
			return changeDeadLetters(a, cmd, &t, args, all, c, ch, "", func(b *store.Batch, d store.DeadLetter) {
				b.DeleteDeadLetter(d.ID)
			})
		},
	}
	bindStoreTarget(cmd.Flags(), &t, true)
	cmd.Flags().BoolVar(&all, "all", false, "every dead letter")
	return cmd
}

// changeDeadLetters applies change to each dead letter named in args (or
// all of them), once all of them are known to be there: through the
// running node (ch; nodeNote ends the report), or on the store of a
// stopped one (apply; changeStored).
func changeDeadLetters(a *app, cmd *cobra.Command, t *storeTarget, args []string, all bool, c change,
	ch nodeChange, nodeNote string, apply func(*store.Batch, store.DeadLetter)) error {
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
	if done, dir, ran, err := t.changeNode(ids, all, ch); ran || err != nil {
		if err != nil {
			return err
		}
		c.note = nodeNote
		return c.print(a.out, t.asJSON, dir, done)
	}
	st, dir, err := t.open(cmd, false)
	if err != nil {
		return err
	}
	defer st.Close()
	if all {
		// The IDs alone: a dead letter's payload is read when it is
		// changed, so that the whole table is never held at once.
		err := st.EachDeadLetterStamp(cmd.Context(), func(s store.Stamp) error {
			ids = append(ids, handler.ExchangeID(s.ID))
			return nil
		})
		if err != nil {
			return err
		}
	} else {
		var lookupErr error
		has := func(id uint64) bool {
			_, ok, err := st.DeadLetter(id)
			lookupErr = cmp.Or(lookupErr, err)
			return ok
		}
		err := missing(ids, has, "the dead letters of "+dir)
		if lookupErr != nil {
			return lookupErr
		}
		if err != nil {
			return err
		}
	}
	if done, err := changeStored(st, ids, apply, maxChangeBatch); err != nil {
		if len(done) == 0 {
			return err
		}
		_ = c.print(a.out, t.asJSON, dir, done)
		if errors.Is(err, store.ErrFailed) {
			// The store failed in the batch's own write: pebble may have
			// logged it before the failure, and a restart may find it.
			return fmt.Errorf("%d of the %d dead letters changed (above); the next batch may or may not be on disk, "+
				"the rest are not: list them again: %w", len(done), len(ids), err)
		}
		return fmt.Errorf("%d of the %d dead letters changed (above), the rest not: %w", len(done), len(ids), err)
	}
	return c.print(a.out, t.asJSON, dir, ids)
}

// maxChangeBatch bounds the payloads one batch of changeStored carries: a
// retry of every dead letter of a large store commits in batches of about
// this size rather than hold the whole table in memory.
const maxChangeBatch = 64 << 20

// changeStored applies change to the dead letters ids of a stopped node's
// store, reading each when its turn comes, in batches of at most limit
// payload bytes (or one dead letter, when it alone is larger). Each dead letter's change is atomic; a
// failed batch leaves it and those after it unchanged, and done says
// which were changed before it.
func changeStored(st *store.Store, ids []handler.ExchangeID, apply func(*store.Batch, store.DeadLetter), limit int) (done []handler.ExchangeID, err error) {
	var b store.Batch
	size := 0 // the payload bytes in b
	commit := func(to int) error {
		if b.Len() == 0 {
			return nil
		}
		if err := st.Commit(&b); err != nil {
			return err
		}
		done = ids[:to]
		b, size = store.Batch{}, 0
		return nil
	}
	for i, id := range ids {
		d, ok, err := st.DeadLetter(uint64(id))
		if err != nil {
			return done, err
		}
		if !ok {
			return done, fmt.Errorf("dead letter %s is gone", id)
		}
		if size > 0 && size+len(d.Payload) > limit {
			if err := commit(i); err != nil {
				return done, err
			}
		}
		apply(&b, d)
		size += len(d.Payload)
	}
	return done, commit(len(ids))
}

// nodeDeadLetterIDs lists the IDs of the running node's dead letters, for
// --all (without their payloads: only the IDs are kept).
func nodeDeadLetterIDs(ctx context.Context, c *control.Client) ([]uint64, error) {
	l, err := c.ListDeadLetters(ctx, false, callTimeout)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	var ids []uint64
	for {
		d, err := l.Next()
		if errors.Is(err, io.EOF) {
			return ids, nil
		}
		if err != nil {
			return nil, err
		}
		ids = append(ids, d.Id)
	}
}
