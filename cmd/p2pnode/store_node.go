package main

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// listOutbox is the outbox of the target's node, running or not, and its
// data directory.
func (t *storeTarget) listOutbox(open func() (*store.Store, string, error)) ([]store.Outgoing, string, error) {
	c, err := t.node()
	if err != nil {
		return nil, "", err
	}
	if c != nil {
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		res, err := c.ListOutbox(ctx)
		if err != nil {
			return nil, "", nodeStoreErr(err)
		}
		out := make([]store.Outgoing, 0, len(res.Outbox))
		for _, s := range res.Outbox {
			o := outgoingOf(s)
			o.Ended, o.Reason, o.Error = unixNs(s.EndedUnixNs), s.Reason, s.Error
			out = append(out, o)
		}
		return out, res.DataDir, nil
	}
	st, dir, err := open()
	if err != nil {
		return nil, "", err
	}
	defer st.Close()
	out, err := st.OutgoingList()
	return out, dir, err
}

// listDeadLetters is the dead letters of the target's node, running or
// not, and its data directory.
func (t *storeTarget) listDeadLetters(open func() (*store.Store, string, error)) ([]store.DeadLetter, string, error) {
	c, err := t.node()
	if err != nil {
		return nil, "", err
	}
	if c != nil {
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		res, err := c.ListDeadLetters(ctx)
		if err != nil {
			return nil, "", nodeStoreErr(err)
		}
		dls := make([]store.DeadLetter, 0, len(res.DeadLetters))
		for _, s := range res.DeadLetters {
			dls = append(dls, store.DeadLetter{Outgoing: outgoingOf(s), Reason: s.Reason, Error: s.Error, Failed: unixNs(s.EndedUnixNs)})
		}
		return dls, res.DataDir, nil
	}
	st, dir, err := open()
	if err != nil {
		return nil, "", err
	}
	defer st.Close()
	dls, err := st.DeadLetters()
	return dls, dir, err
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
			return nil, "", true, nodeStoreErr(err)
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

func outgoingOf(s *pb.Stored) store.Outgoing {
	return store.Outgoing{ID: s.Id, Peer: string(s.Peer), Kind: store.Kind(s.Kind), Addr: s.Addr, Payload: s.Payload,
		Tag: s.Tag, Attempts: int(s.Attempts), Created: unixNs(s.CreatedUnixNs)}
}

// unixNs is a time from Unix nanoseconds; 0 is the zero time.
func unixNs(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
