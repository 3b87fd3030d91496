package main

import (
	"cmp"
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// newOutboxCmd builds "outbox" and its subcommands.
func newOutboxCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "outbox",
		Short: "List the exchanges a node will resume; drop them, or retry them while it is stopped",
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
		Use:   "list (--data-dir DIR | --key FILE | --config FILE | --api SOCKET)",
		Short: "List the exchanges a node will resume (running or stopped)",
		Long: `list prints the outbox: each exchange's ID, peer, kind, tag (run's stdin id;
api-<hex>-N for one started through the control API, by p2pnode send),
attempts so far, when it was started, its state, and its payload (size and
start; all of it with --json). An exchange is running (the next run
resumes it), or ended with an outcome the node had not printed yet when it
stopped (the next run prints it, marked redelivered). Oldest first; the
list is read one exchange at a time, so a large outbox needs little
memory, and it fails only if a running node sends nothing for 30 s.`,
		Example: `  p2pnode outbox list --key node.key
  p2pnode outbox list --data-dir /var/lib/p2pnode --json`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			open := func() (*store.Store, string, error) { return t.open(cmd, true) }
			if t.asJSON {
				return t.listStored(false, true, open, jsonListSink(a.out, "outbox", func(s *pb.Stored) jsonStored {
					return storedJSON(outboxOf(s))
				}))
			}
			var (
				dir string
				tw  *tabwriter.Writer
			)
			return t.listStored(false, false, open, listSink{
				begin: func(d string) error { dir = d; return nil },
				item: func(s *pb.Stored) error {
					if tw == nil {
						tw = tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "EXCHANGE\tPEER\tKIND\tTAG\tATTEMPTS\tCREATED\tSTATE\tSIZE\tPAYLOAD")
					}
					state := "running"
					if s.EndedUnixNs != 0 {
						state = "ended " + s.Reason + ", outcome not yet printed"
					}
					_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", handler.ExchangeID(s.Id), storedPeer(string(s.Peer)),
						store.Kind(s.Kind), dash(s.Tag), s.Attempts, tableTime(unixNs(s.CreatedUnixNs)), state, s.PayloadSize,
						preview(s.Payload, s.PayloadSize, s.PayloadUtf8))
					return err
				},
				end: func() error {
					if tw == nil {
						_, err := fmt.Fprintf(a.out, "%s: the outbox is empty\n", dir)
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

func newOutboxDropCmd(a *app) *cobra.Command {
	var t storeTarget
	cmd := &cobra.Command{
		Use:   "drop (--data-dir DIR | --key FILE | --config FILE | --api SOCKET) EXCHANGE...",
		Short: "Remove exchanges from the outbox: they end, or will not resume",
		Long: `drop removes exchanges from the outbox. A running node (reached through its
control socket) ends them at once: each gets its exchange event with the
reason "cancelled" and is not kept in the dead letters; an exchange that
has already ended is refused. On a stopped node's store, the next run does
not resume them, and they get no event. A peer may have received them
already.`,
		Example: `  p2pnode outbox drop --key node.key 3f2a9c0d4e5b6a71
  p2pnode outbox drop --data-dir /var/lib/p2pnode 3f2a9c0d4e5b6a71 00c0ffee00c0ffee --json`,
		Args: checkArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := change{"drop", "outbox", "dropped from the outbox of", "; they will not resume"}
			ids, err := parseExchangeArgs(args)
			if err != nil {
				return err
			}
			if done, dir, ran, err := t.changeNode(ids, false, nodeChange{call: func(ctx context.Context, c *control.Client, ids []uint64) (*pb.ExchangesResponse, error) {
				return c.CancelOutbox(ctx, ids)
			}}); ran || err != nil {
				if err != nil {
					return err
				}
				c.done, c.note = "cancelled in the node of", "; not dead-lettered"
				return c.print(a.out, t.asJSON, dir, done)
			}
			return changeOutbox(a, cmd, &t, args, c, func(b *store.Batch, o store.Outgoing) {
				b.DeleteOutgoing(o.ID)
			})
		},
	}
	bindStoreTarget(cmd.Flags(), &t, true)
	return cmd
}

func newOutboxRetryCmd(a *app) *cobra.Command {
	var t storeTarget
	cmd := &cobra.Command{
		Use:   "retry (--data-dir DIR | --key FILE | --config FILE) EXCHANGE...",
		Short: "Reset the attempt count of exchanges in the outbox",
		Long: `retry sets the attempts of exchanges in the outbox back to 0: the next run
resumes them with the full --max-attempts. An ended exchange runs again
(its responder answers a resent request with the reply it stored).`,
		Example: `  p2pnode outbox retry --key node.key 3f2a9c0d4e5b6a71`,
		Args:    checkArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := change{"retry", "outbox", "attempts reset to 0 in the outbox of", ""}
			return changeOutbox(a, cmd, &t, args, c, func(b *store.Batch, o store.Outgoing) {
				o.Attempts = 0
				o.Ended, o.Reason, o.Error, o.Reply = time.Time{}, "", "", nil
				b.PutOutgoing(o)
				// An ended exchange that failed is a dead letter too (its
				// outcome was not printed yet): it runs again now, and a
				// dead letter left behind would let deadletters retry
				// start it a second time.
				b.DeleteDeadLetter(o.ID)
			})
		},
	}
	bindStoreTarget(cmd.Flags(), &t, false) // it opens the store: no running node to ask
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
	st, dir, err := t.open(cmd, false)
	if err != nil {
		return err
	}
	defer st.Close()
	// Only the exchanges named are read, not the whole outbox.
	byID := make(map[uint64]store.Outgoing, len(ids))
	var lookupErr error
	has := func(id uint64) bool {
		o, ok, err := st.Outgoing(id)
		if ok {
			byID[id] = o
		}
		lookupErr = cmp.Or(lookupErr, err)
		return ok
	}
	err = missing(ids, has, "the outbox of "+dir)
	if lookupErr != nil {
		return lookupErr
	}
	if err != nil {
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
