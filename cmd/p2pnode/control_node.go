package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// The control API's calls, answered from the running node's read-only
// snapshots (handler, host, allowlist, DHT, store).

// Status implements control.Node.
func (c *nodeControl) Status(context.Context) (*pb.StatusResponse, error) {
	r := c.r
	snap := r.h.Snapshot()
	res := &pb.StatusResponse{
		PeerId:        r.node.ID().String(),
		ListenAddrs:   multiaddrStrings(r.node.Addrs()),
		Version:       buildVersion().Version,
		StartedUnixMs: c.started.UnixMilli(),
		DataDir:       r.dataDir,
		Handler: &pb.HandlerStatus{
			Active:          int32(snap.Active),
			Queued:          int32(snap.Queued),
			PendingRequests: int32(snap.PendingRequests),
			EventsBacklog:   int32(snap.EventsBacklog),
			OutcomesBacklog: int32(snap.OutcomesBacklog),
		},
		Store:          &pb.StoreStatus{},
		ConnectedPeers: int32(len(r.node.ConnectedPeers())),
	}
	if st := c.st; st != nil {
		// Counted from the keys: loading the lists made a status cost as
		// much memory as the payloads in the store.
		n, err := st.Count()
		if err != nil {
			return nil, err
		}
		// The disk it takes as its cap counts it (as du does).
		size, err := st.DiskUsage()
		if err != nil {
			return nil, err
		}
		res.Store = &pb.StoreStatus{Enabled: true, SizeBytes: size,
			Outbox: int32(n.Outgoing), DeadLetters: int32(n.DeadLetters)}
	}
	v := r.list.Version()
	res.Allowlist = &pb.AllowlistStatus{Entries: int32(v.Len), Version: v.Number, Digest: v.Digest}
	if doc := r.membershipInForce(); doc != nil {
		// No file: absPath("") would name the working directory.
		res.Allowlist.MembershipVersion, res.Allowlist.MembershipHash = doc.Version(), doc.Hash().String()
	} else {
		res.Allowlist.File = absPath(r.cfg.Allowlist)
	}
	res.Relay = relayStatusPB(r.node.RelayStatus(), r.node.RelayAddrs())
	res.Dht = &pb.DHTStatus{}
	if d := r.dht; d != nil {
		res.Dht.Enabled = true
		select {
		case <-d.Ready():
			res.Dht.Ready = true
		default:
		}
		res.Dht.RoutingTable = int32(len(d.Peers()))
		if rec, ok := d.Published(); ok {
			res.Dht.PublishedUnixMs = rec.Published.UnixMilli()
		}
	}
	return res, nil
}

// Peers implements control.Node: the connected peers and the allowlisted
// ones, each once, connected first.
func (c *nodeControl) Peers(context.Context) (*pb.PeersResponse, error) {
	r := c.r
	snap := r.h.Snapshot()
	lim := r.node.Limiter()
	byID := make(map[peer.ID]*pb.PeerInfo)
	info := func(id peer.ID) *pb.PeerInfo {
		p := byID[id]
		if p == nil {
			p = &pb.PeerInfo{PeerId: id.String(), Banned: lim.PeerBanned(string(id))}
			if hs, ok := snap.Peers[id]; ok {
				p.ActiveExchanges, p.QueuedExchanges = int32(hs.Active), int32(hs.Queued)
				if !hs.LastExchange.IsZero() {
					p.LastExchangeUnixMs = hs.LastExchange.UnixMilli()
				}
			}
			byID[id] = p
		}
		return p
	}
	self := r.node.ID()
	for _, e := range r.list.Entries() {
		if e.ID == self {
			continue // operators often list every node, this one too
		}
		p := info(e.ID)
		p.Allowlisted, p.Name = true, e.Name
	}
	for _, pc := range r.node.ConnectedPeers() {
		p := info(pc.Peer)
		p.Connected = true
		p.Addrs = multiaddrStrings(pc.Addrs)
		switch {
		case pc.Inbound && pc.Outbound:
			p.Direction = "both"
		case pc.Inbound:
			p.Direction = "inbound"
		default:
			p.Direction = "outbound"
		}
		if !pc.Since.IsZero() {
			p.ConnectedSinceUnixMs = pc.Since.UnixMilli()
		}
		switch {
		case pc.Direct && pc.Relayed:
			p.Connection = "both"
		case pc.Relayed:
			p.Connection = "relayed"
		default:
			p.Connection = "direct"
		}
	}
	res := &pb.PeersResponse{}
	for _, p := range byID {
		res.Peers = append(res.Peers, p)
	}
	slices.SortFunc(res.Peers, func(a, b *pb.PeerInfo) int {
		if a.Connected != b.Connected {
			if a.Connected {
				return -1
			}
			return 1
		}
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.PeerId, b.PeerId))
	})
	return res, nil
}

// Exchange implements control.Node: it starts the exchange on the
// node's handler, tagged so that the run loop hands its reply and outcome
// to this call (and prints them, like any other), and waits for them, or
// for req.WaitNs: then it answers with the exchange's ID, still running.
func (c *nodeControl) Exchange(ctx context.Context, req *pb.ExchangeRequest) (*pb.ExchangeResponse, error) {
	to, err := peer.Decode(req.PeerId)
	if err != nil {
		return nil, fmt.Errorf("%w: %q is not a peer ID", control.ErrInvalid, req.PeerId)
	}
	var addr ma.Multiaddr
	if req.Addr != "" {
		if addr, err = ma.NewMultiaddr(req.Addr); err != nil {
			return nil, fmt.Errorf("%w: %q is not a multiaddr: %v", control.ErrInvalid, req.Addr, err)
		}
	}
	if c.r.ops.stopping.Load() {
		return nil, control.ErrStopping
	}
	tag := c.tagPrefix + fmt.Sprint(c.next.Add(1))
	w := c.waiters.add(tag)
	defer c.waiters.remove(tag)
	start := c.r.h.Request
	if req.OneWay {
		start = c.r.h.Send
	}
	began := time.Now()
	id, err := start(to, addr, req.Data, handler.WithTag(tag))
	if err != nil {
		return nil, errStopping(err)
	}
	// The caller's own wait (req.WaitNs) ends before its deadline, so that
	// it learns the ID of the exchange it leaves running; its deadline
	// alone would end the call with no answer at all.
	var waited <-chan time.Time
	if req.WaitNs > 0 {
		t := time.NewTimer(time.Duration(req.WaitNs))
		defer t.Stop()
		waited = t.C
	}
	return c.await(ctx, id, w, waited, began)
}

// replyOutcomeWait is how long an Exchange whose wait ended with the reply
// in, but not yet the outcome, waits for that outcome: the handler hands
// both out at once, and the run loop hands the outcome over once it has
// printed it, at once but for a stdout that is slow to take lines.
const replyOutcomeWait = 500 * time.Millisecond

// await waits for exchange id's reply and outcome (w), until the caller's
// wait (waited) or ctx ends. began is when the exchange started.
//
// A reply that came answers the call, also when the wait ends before its
// outcome: the handler hands a reply out only with its exchange's OK
// outcome, so the exchange has succeeded (answered "still running", the
// reply the node printed would be lost to the caller, who would report no
// answer). The outcome, which gives the attempts and the duration, is
// waited for replyOutcomeWait more; without it the answer is the reply,
// OK, with the duration until the reply came and no attempts (0: not
// known).
func (c *nodeControl) await(ctx context.Context, id handler.ExchangeID, w *waiter, waited <-chan time.Time, began time.Time) (*pb.ExchangeResponse, error) {
	var (
		reply   *handler.Reply
		replied time.Duration
	)
	for {
		select {
		case <-waited:
			return c.waitEnded(ctx, id, w, reply, replied, began)
		case rep := <-w.reply:
			reply, replied = &rep, time.Since(began)
		case o := <-w.outcome:
			return exchangeResponse(o, reply), nil
		case <-ctx.Done():
			return nil, c.abandoned(id, ctx.Err())
		}
	}
}

// abandoned says what became of an exchange whose caller stopped waiting:
// the caller gave up (the exchange goes on in the node, even one that is
// stopping: it may still end within the handler's CloseTimeout), or the
// node closed its socket once its handler had closed, the exchange still
// unfinished.
func (c *nodeControl) abandoned(id handler.ExchangeID, err error) error {
	switch {
	case c.r.ops.closed.Load() && c.st != nil:
		return fmt.Errorf("%w before exchange %s ended: it stays in the outbox and resumes at the next start (p2pnode outbox list)",
			control.ErrStopping, id)
	case c.r.ops.closed.Load():
		return fmt.Errorf("%w before exchange %s ended (ephemeral: it is abandoned)", control.ErrStopping, id)
	}
	return fmt.Errorf("exchange %s still running in the node: %w", id, err)
}

// waitEnded answers an Exchange whose caller's wait ended, with the reply
// so far (nil: none), which came replied after the exchange began: see
// await.
func (c *nodeControl) waitEnded(ctx context.Context, id handler.ExchangeID, w *waiter, reply *handler.Reply, replied time.Duration, began time.Time) (*pb.ExchangeResponse, error) {
	// What the run loop handed over counts even if it came as the wait
	// ended: select picks at random among ready cases.
	select {
	case o := <-w.outcome:
		return exchangeResponse(o, reply), nil
	default:
	}
	if reply == nil {
		select {
		case rep := <-w.reply:
			reply, replied = &rep, time.Since(began)
		default:
			return &pb.ExchangeResponse{Exchange: id.String(), Running: true}, nil
		}
	}
	t := time.NewTimer(replyOutcomeWait)
	defer t.Stop()
	select {
	case o := <-w.outcome:
		return exchangeResponse(o, reply), nil
	case <-t.C:
	case <-ctx.Done():
		// The caller is gone: nobody reads the answer.
		return nil, c.abandoned(id, ctx.Err())
	}
	res := &pb.ExchangeResponse{Exchange: id.String(), Ok: true, Reason: string(handler.ReasonOK), DurationNs: int64(replied)}
	res.HasReply, res.Reply, res.ReplyFrom = true, reply.Data, reply.From.String()
	return res, nil
}

// exchangeResponse is the answer of an exchange that ended with o, whose
// reply (requests) the run loop handed over before it, or not (nil).
func exchangeResponse(o handler.Outcome, reply *handler.Reply) *pb.ExchangeResponse {
	if o.OK && o.Kind == handler.KindRequest && reply == nil && o.Reply != nil {
		// The run loop hands the reply over first; the outcome carries it
		// anyway.
		reply = o.Reply
	}
	res := &pb.ExchangeResponse{
		Exchange:   o.Exchange.String(),
		Ok:         o.OK,
		Reason:     string(o.Reason),
		Error:      errText(o.Err),
		Attempts:   int32(o.Attempts),
		DurationNs: int64(o.Duration),
	}
	if reply != nil {
		res.HasReply, res.Reply, res.ReplyFrom = true, reply.Data, reply.From.String()
	}
	return res
}

// ReloadAllowlist implements control.Node: the reload SIGHUP does, with
// the same events, and its first error.
//
// A node run with --membership has no allowlist file: its members are the
// list. It reloads its routes alone and says so (MembershipVersion, no
// File); without routes there is nothing to reload, and the call fails
// rather than report a reload that read nothing.
func (c *nodeControl) ReloadAllowlist(context.Context) (*pb.ReloadAllowlistResponse, error) {
	r := c.r
	if r.ops.stopping.Load() {
		// Its event would come after the watchers stopped, amid the
		// stop's own output, on a list about to go.
		return nil, control.ErrStopping
	}
	doc := r.membershipInForce()
	if doc != nil && r.routes == nil {
		return nil, fmt.Errorf("%w: a node run with --membership has no allowlist file to reload: its allowlist is the members of membership version %d "+
			"(change them with p2pnode membership submit), and it has no --routes file", control.ErrUnsupported, doc.Version())
	}
	if err := r.reload(); err != nil {
		return nil, err
	}
	v := r.list.Version()
	res := &pb.ReloadAllowlistResponse{Entries: int32(v.Len), Version: v.Number}
	if doc != nil {
		// The version as it stands after the reload (one may have been
		// applied meanwhile).
		res.MembershipVersion = r.membershipInForce().Version()
	} else {
		res.File = absPath(r.cfg.Allowlist)
	}
	if r.routes != nil {
		res.RoutesFile, res.Routes = absPath(r.cfg.Routes), int32(len(r.routes.Rules()))
	}
	return res, nil
}

// ListOutbox implements control.Node: the outbox oldest first, one
// exchange a message as it is read from the store (walkOutbox), stopping
// when the client goes away.
func (c *nodeControl) ListOutbox(ctx context.Context, req *pb.ListStoredRequest, send func(*pb.ListStoredResponse) error) error {
	st, err := c.store()
	if err != nil {
		return err
	}
	if err := send(&pb.ListStoredResponse{DataDir: c.r.dataDir}); err != nil {
		return err
	}
	return c.listErr(ctx, walkOutbox(ctx, st, func(o store.Outgoing) error {
		return send(&pb.ListStoredResponse{Item: outboxPB(o, req.Payloads)})
	}))
}

// ListDeadLetters implements control.Node, as ListOutbox.
func (c *nodeControl) ListDeadLetters(ctx context.Context, req *pb.ListStoredRequest, send func(*pb.ListStoredResponse) error) error {
	st, err := c.store()
	if err != nil {
		return err
	}
	if err := send(&pb.ListStoredResponse{DataDir: c.r.dataDir}); err != nil {
		return err
	}
	return c.listErr(ctx, walkDeadLetters(ctx, st, func(d store.DeadLetter) error {
		return send(&pb.ListStoredResponse{Item: deadLetterPB(d, req.Payloads)})
	}))
}

// listErr is the error a list ends with: ErrStopping when the node's stop
// ended it (the socket closing cancels the calls), rather than a bare
// "context canceled" the caller could take for its own doing.
func (c *nodeControl) listErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && c.r.ops.stopping.Load() {
		return fmt.Errorf("%w: the list was cut short", control.ErrStopping)
	}
	return err
}

func (c *nodeControl) store() (*store.Store, error) {
	if c.st == nil {
		return nil, fmt.Errorf("%w: the node is ephemeral: it has no store", control.ErrUnsupported)
	}
	return c.st, nil
}

func multiaddrStrings(as []ma.Multiaddr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}
