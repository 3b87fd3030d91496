package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// The list commands of outbox and deadletters read a running node's store
// through its control socket, and a stopped node's store directly; so do
// deadletters retry and drop and outbox drop change it.

// node returns a client of the running node the target names, or nil when
// no node runs there (the caller then opens the store, which is free). An
// --api that names no running node is an error. With no target at all it
// is the one node running with a default data directory, as for status;
// several are an error that names them.
func (t *storeTarget) node() (*control.Client, error) {
	nt := nodeTarget{api: t.api, dataDir: t.dataDir, config: t.config, key: t.key}
	if !nt.given() {
		path, err := findDefaultSocket()
		switch {
		case errors.Is(err, control.ErrNoNode):
			return nil, nil // t.open says what is missing
		case err != nil:
			return nil, err
		}
		nt.api = path
	}
	c, err := nt.dial()
	switch {
	case err == nil:
		return c, nil
	case t.api != "":
		return nil, err
	}
	// No node (or no socket to find it by): the store itself says why
	// it cannot be opened, if it cannot.
	return nil, nil
}

// listSink prints a list as it comes: begin with the data directory,
// item with each exchange, end once the list is over.
type listSink struct {
	begin func(dir string) error
	item  func(*pb.Stored) error
	end   func() error
}

// listStored prints the outbox (or with dead the dead letters) of the
// target's node, running or not, to sink, one exchange at a time: from the
// running node's stream, or from the stopped node's store (open). payloads
// says whether sink needs whole payloads or only their start. A list that
// makes progress runs as long as it needs: only a node silent for
// callTimeout fails it.
func (t *storeTarget) listStored(dead, payloads bool, open func() (*store.Store, string, error), sink listSink) error {
	what := "outbox"
	if dead {
		what = "dead letters"
	}
	c, err := t.node()
	if err != nil {
		return err
	}
	if c != nil {
		defer c.Close()
		list := c.ListOutbox
		if dead {
			list = c.ListDeadLetters
		}
		l, err := list(context.Background(), payloads, callTimeout)
		if err != nil {
			return nodeListErr(err, what)
		}
		defer l.Close()
		if err := sink.begin(l.DataDir); err != nil {
			return err
		}
		for {
			s, err := l.Next()
			if errors.Is(err, io.EOF) {
				return sink.end()
			}
			if err != nil {
				return nodeListErr(err, what)
			}
			if err := sink.item(s); err != nil {
				return err
			}
		}
	}
	st, dir, err := open()
	if err != nil {
		return err
	}
	defer st.Close()
	if err := sink.begin(dir); err != nil {
		return err
	}
	ctx := context.Background()
	if dead {
		err = walkDeadLetters(ctx, st, func(d store.DeadLetter) error { return sink.item(deadLetterPB(d, payloads)) })
	} else {
		err = walkOutbox(ctx, st, func(o store.Outgoing) error { return sink.item(outboxPB(o, payloads)) })
	}
	if err != nil {
		return err
	}
	return sink.end()
}

// nodeListErr words the failure of a list the running node was sending.
func nodeListErr(err error, what string) error {
	var re *control.RemoteError
	switch {
	case errors.Is(err, control.ErrStalled):
		return fmt.Errorf("listing the %s: %w; the node may be overloaded: try again, or stop it (SIGTERM) and list its store", what, err)
	case errors.Is(err, control.ErrReaderStalled):
		return fmt.Errorf("listing the %s: %w; list again, and read the output as it comes (a pager left open stops it)", what, err)
	case errors.As(err, &re) && re.Code == connect.CodeUnimplemented:
		return fmt.Errorf("the running node is an older p2pnode that cannot stream its %s to this one: restart it on this version, "+
			"or stop it and list its store", what)
	}
	return nodeStoreErr(err)
}

// nodeChange is a change to the exchanges of a running node's store: its
// RPC, and for --all the IDs it applies to.
type nodeChange struct {
	call func(ctx context.Context, c *control.Client, ids []uint64) (*pb.ExchangesResponse, error)
	all  func(ctx context.Context, c *control.Client) ([]uint64, error)
}

// changeNode makes ch through the running node the target names, on ids
// (or all, with ch.all). ran is false when no node runs there: the caller
// then changes the store itself. dir is the node's data directory.
func (t *storeTarget) changeNode(ids []handler.ExchangeID, all bool, ch nodeChange) (done []handler.ExchangeID, dir string, ran bool, err error) {
	c, err := t.node()
	if err != nil || c == nil {
		return nil, "", false, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	raw := make([]uint64, len(ids))
	for i, id := range ids {
		raw[i] = uint64(id)
	}
	if all {
		if raw, err = ch.all(ctx, c); err != nil {
			return nil, "", true, nodeListErr(err, "dead letters")
		}
		if len(raw) == 0 {
			st, err := c.Status(ctx)
			if err != nil {
				return nil, "", true, err
			}
			return nil, st.DataDir, true, nil
		}
	}
	res, err := ch.call(ctx, c, raw)
	switch {
	case errors.Is(err, control.ErrInvalid):
		return nil, "", true, errors.New(remoteText(err, control.ErrInvalid))
	case errors.As(err, new(*control.ConnectionError)):
		return nil, "", true, fmt.Errorf("%w; whether it made the change first is not known: list the outbox or dead letters to see", err)
	case err != nil:
		return nil, "", true, nodeStoreErr(err)
	}
	for _, id := range res.Ids {
		done = append(done, handler.ExchangeID(id))
	}
	return done, res.DataDir, true, nil
}

// nodeStoreErr rewords the error of a node without a store.
func nodeStoreErr(err error) error {
	if errors.Is(err, control.ErrUnsupported) {
		return usageErrorf("%v", err)
	}
	return err
}

// outboxOf is an exchange of a list as the outbox's record (its payload
// as the list carried it).
func outboxOf(s *pb.Stored) store.Outgoing {
	return store.Outgoing{ID: s.Id, Peer: string(s.Peer), Kind: store.Kind(s.Kind), Addr: s.Addr, Payload: s.Payload,
		Tag: s.Tag, Attempts: int(s.Attempts), Created: unixNs(s.CreatedUnixNs),
		Ended: unixNs(s.EndedUnixNs), Reason: s.Reason, Error: s.Error}
}

// deadLetterOf is an exchange of a list as the dead letter's record.
func deadLetterOf(s *pb.Stored) store.DeadLetter {
	o := outboxOf(s)
	o.Ended, o.Reason, o.Error = time.Time{}, "", ""
	return store.DeadLetter{Outgoing: o, Reason: s.Reason, Error: s.Error, Failed: unixNs(s.EndedUnixNs)}
}

// unixNs is a time from Unix nanoseconds; 0 is the zero time.
func unixNs(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
