package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/pflag"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
)

// sendNodeFlags are the flags of send that apply when it goes through the
// running node; the others configure a node of send's own (--standalone).
var sendNodeFlags = []string{"to", "addr", "data-b64", "timeout", "no-reply", "json", "key", "config", "api",
	"data-dir", "standalone", "log-level", "log-format"}

// sendThroughNode runs send's exchange on the running node, through its
// control socket, and prints the result as a standalone send would.
func sendThroughNode(a *app, fs *pflag.FlagSet, t nodeTarget, o sendOptions, asJSON bool, args []string) error {
	to, addr, err := o.target()
	if err != nil {
		return usageError{err}
	}
	data, err := o.payload(args)
	if err != nil {
		return usageError{err}
	}
	if o.timeout <= 0 {
		return usageErrorf("--timeout must be positive (got %s)", o.timeout)
	}
	var only error
	fs.Visit(func(f *pflag.Flag) {
		if only == nil && !slices.Contains(sendNodeFlags, f.Name) {
			only = usageErrorf("--%s configures a node of send's own: give --standalone too, or leave it out (the running node uses its own settings)", f.Name)
		}
	})
	if only != nil {
		return only
	}
	c, err := t.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	// The node stops waiting at --timeout and answers with the exchange's
	// ID (running); the call's own deadline, a little later, only ends a
	// wait for a node that does not answer.
	req := &pb.ExchangeRequest{PeerId: to.String(), Data: data, OneWay: o.oneWay, WaitNs: int64(o.timeout)}
	if addr != nil {
		req.Addr = addr.String()
	}
	timeout, cancel := context.WithTimeout(context.Background(), o.timeout+exchangeAnswerGrace)
	defer cancel()
	ctx, stop := interruptible(timeout)
	defer stop()
	res, err := c.Exchange(ctx, req)
	switch {
	case err == nil && res.Running:
		return sendRunning(a, asJSON, to, res.Exchange, o.timeout)
	case err != nil && timeout.Err() != nil:
		return fmt.Errorf("send to %s: no answer within %s; the exchange goes on in the node (its events say how it ends)", to, o.timeout)
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("send to %s: interrupted; the exchange goes on in the node (its events say how it ends)", to)
	case errors.Is(err, control.ErrInvalid):
		return usageError{err}
	case errors.As(err, new(*control.ConnectionError)):
		// The node may have stored the exchange before it went: say
		// where to look rather than guess.
		return fmt.Errorf("send to %s: the node went away before the exchange ended (%w); if it had taken the exchange, "+
			"a node with a store resumes it at its next start (p2pnode outbox list shows it), an ephemeral node has lost it", to, err)
	case err != nil:
		return fmt.Errorf("send to %s: %w", to, err)
	}
	out, reply, err := exchangeResult(res)
	if err != nil {
		return err
	}
	if !out.OK {
		return fmt.Errorf("send to %s failed: %s after %s (%s)", to, out.Reason, plural(out.Attempts, "attempt"), errText(out.Err))
	}
	if !o.oneWay && reply == nil {
		return fmt.Errorf("send to %s: the node reported success without a reply", to)
	}
	return printSendResult(a, asJSON, to, reply, out)
}

// exchangeAnswerGrace is how long send waits past --timeout for the node's
// answer that the exchange still runs, or for its answer with a reply that
// came by then, whose outcome the node waits for a little more
// (replyOutcomeWait).
const exchangeAnswerGrace = 2 * time.Second

// sendRunning reports an exchange the node still runs when send stops
// waiting, by its ID: what "p2pnode outbox list" and the node's events
// name it by. With --json it prints {"event":"running",...} first.
func sendRunning(a *app, asJSON bool, to peer.ID, exchange string, waited time.Duration) error {
	if asJSON {
		enc := json.NewEncoder(a.out)
		if err := enc.Encode(struct {
			Event    string  `json:"event"`
			Peer     string  `json:"peer"`
			Exchange string  `json:"exchange"`
			WaitedMS float64 `json:"waited_ms"`
		}{"running", to.String(), exchange, millis(waited)}); err != nil {
			return err
		}
	}
	return fmt.Errorf("send to %s: no answer within %s; exchange %s goes on in the node (its events say how it ends)", to, waited, exchange)
}

// exchangeResult turns the node's answer into the handler's types that
// printSendResult prints.
func exchangeResult(res *pb.ExchangeResponse) (handler.Outcome, *handler.Reply, error) {
	id, err := handler.ParseExchangeID(res.Exchange)
	if err != nil {
		return handler.Outcome{}, nil, fmt.Errorf("the node answered with a bad exchange ID %q", res.Exchange)
	}
	o := handler.Outcome{Exchange: id, OK: res.Ok, Reason: handler.Reason(res.Reason), Attempts: int(res.Attempts),
		Duration: time.Duration(res.DurationNs)}
	if res.Error != "" {
		o.Err = errors.New(res.Error)
	}
	if !res.HasReply {
		return o, nil, nil
	}
	r := &handler.Reply{Exchange: id, Data: res.Reply}
	if r.From, err = peer.Decode(res.ReplyFrom); err != nil {
		return o, nil, fmt.Errorf("the node answered with a bad peer ID %q", res.ReplyFrom)
	}
	return o, r, nil
}
