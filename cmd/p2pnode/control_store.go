package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
)

// The control API's changes to the running node's exchanges: retry and
// drop dead letters, cancel exchanges of the outbox. The handler makes
// them, so they agree with what it runs; the node prints their events.

// RetryDeadLetters implements control.Node.
func (c *nodeControl) RetryDeadLetters(_ context.Context, req *pb.ExchangesRequest) (*pb.ExchangesResponse, error) {
	return c.change(req, func(ids []handler.ExchangeID) error { return c.r.h.RetryDeadLetters(ids...) })
}

// DropDeadLetters implements control.Node.
func (c *nodeControl) DropDeadLetters(_ context.Context, req *pb.ExchangesRequest) (*pb.ExchangesResponse, error) {
	return c.change(req, func(ids []handler.ExchangeID) error { return c.r.h.DropDeadLetters(ids...) })
}

// CancelOutbox implements control.Node.
func (c *nodeControl) CancelOutbox(_ context.Context, req *pb.ExchangesRequest) (*pb.ExchangesResponse, error) {
	return c.change(req, func(ids []handler.ExchangeID) error { return c.r.h.Cancel(ids...) })
}

// change applies f to the IDs of req and words its errors for the client.
func (c *nodeControl) change(req *pb.ExchangesRequest, f func([]handler.ExchangeID) error) (*pb.ExchangesResponse, error) {
	if c.r.ops.stopping.Load() {
		return nil, control.ErrStopping
	}
	if len(req.Ids) == 0 {
		return nil, fmt.Errorf("%w: no exchange named", control.ErrInvalid)
	}
	ids := make([]handler.ExchangeID, len(req.Ids))
	for i, id := range req.Ids {
		ids[i] = handler.ExchangeID(id)
	}
	err := f(ids)
	switch {
	case errors.Is(err, handler.ErrNoStore):
		return nil, fmt.Errorf("%w: the node is ephemeral: it has no store", control.ErrUnsupported)
	case errors.Is(err, handler.ErrClosed):
		return nil, fmt.Errorf("%w: %v", control.ErrStopping, err)
	case errors.Is(err, handler.ErrUnknownExchange):
		msg := strings.TrimPrefix(err.Error(), handler.ErrUnknownExchange.Error()+": ")
		return nil, fmt.Errorf("%w: %s: nothing changed", control.ErrInvalid, msg)
	case err != nil:
		return nil, err
	}
	return &pb.ExchangesResponse{DataDir: c.r.dataDir, Ids: req.Ids}, nil
}
