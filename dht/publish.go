package dht

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"
)

// publishTimeout bounds one periodic publication.
const publishTimeout = 30 * time.Second

// publisher is the state of the node's own record.
type publisher struct {
	// turn serializes publications, so that seqs reach the DHT in order:
	// one slot, held for as long as the network takes, so a caller waits
	// for it only as long as its context allows (a channel, not a mutex).
	turn chan struct{}
	seq  uint64 // under turn
	// last is the last record published; read without turn.
	last atomic.Pointer[Record]
	// stored is closed, and replaced, when a record is published: a
	// change to wait on (the tests; under notifyMu).
	notifyMu sync.Mutex
	stored   chan struct{}
}

// published returns a channel closed by the next publication.
func (p *publisher) published() <-chan struct{} {
	p.notifyMu.Lock()
	defer p.notifyMu.Unlock()
	if p.stored == nil {
		p.stored = make(chan struct{})
	}
	return p.stored
}

// notify closes the channel of published.
func (p *publisher) notify() {
	p.notifyMu.Lock()
	defer p.notifyMu.Unlock()
	if p.stored != nil {
		close(p.stored)
		p.stored = nil
	}
}

// Publish signs a fresh record of this node (its current addresses, a new
// Seq, expiring after Config.RecordTTL), sealed to the members when
// Config.Membership is set, and stores it on the nodes closest to its key,
// and locally. The DHT also publishes on its own; call Publish to
// push a change at once. Publications run one at a time, so that their Seqs
// reach the DHT in order: Publish first waits for one under way, for as
// long as ctx allows. It fails with ErrNotReady while the routing table is
// empty (the record is then stored locally only). A failed publication
// names a peer that refused this node's connection before the handshake as
// Find does (p2p.ErrClosedAtHandshake); one that did not fail logs a
// warning naming the peer it met so, which did not get the record.
func (d *DHT) Publish(ctx context.Context) (Record, error) {
	if d.ctx.Err() != nil {
		return Record{}, ErrClosed
	}
	select {
	case d.pub.turn <- struct{}{}:
	case <-ctx.Done():
		return Record{}, fmt.Errorf("dht: publish: waiting for the publication under way: %w", ctx.Err())
	}
	defer func() { <-d.pub.turn }()
	now := d.cfg.Now()
	seq := d.pub.seq + 1
	if n := now.UnixNano(); n > 0 && uint64(n) > d.pub.seq {
		seq = uint64(n)
	}
	r := Record{
		Peer:      d.host.ID(),
		Addrs:     d.publishAddrs(),
		Seq:       seq,
		Published: now,
		Expires:   now.Add(d.cfg.RecordTTL),
	}
	data, err := d.sealOwn(r)
	if err != nil {
		return Record{}, err
	}
	d.pub.seq = seq
	empty := d.kad.RoutingTable().Size() == 0
	qctx, refused := withRefusals(ctx)
	if err := d.kad.PutValue(qctx, RecordKey(r.Peer), data); err != nil {
		if empty {
			err = fmt.Errorf("%w: %w", ErrNotReady, err)
		}
		return Record{}, d.explain(refused, fmt.Errorf("dht: publish: %w", err))
	}
	if ref := refused.refusal(); ref != nil {
		// kad-dht stores the record on the peers it reached and fails
		// only if it found none to ask: those that refused this node
		// did not get it, perhaps none did.
		d.log.Warn("record published, but not on the peers that refused this node", zap.Uint64("seq", r.Seq), zap.Error(ref))
	}
	d.pub.last.Store(&r)
	d.pub.notify()
	d.log.Debug("record published", zap.Uint64("seq", r.Seq), zap.Int("addrs", len(r.Addrs)))
	return r, nil
}

// Published returns the last record this node published, if any.
func (d *DHT) Published() (Record, bool) {
	r := d.pub.last.Load()
	if r == nil {
		return Record{}, false
	}
	c := *r
	c.Addrs = slices.Clone(r.Addrs)
	return c, true
}

// publishAddrs are the addresses to put in the record: Config.Addrs or the
// host's, without /p2p, at most MaxRecordAddrs.
func (d *DHT) publishAddrs() []ma.Multiaddr {
	var src []ma.Multiaddr
	if d.cfg.Addrs != nil {
		src = d.cfg.Addrs()
	} else {
		src = d.host.Addrs()
	}
	out := make([]ma.Multiaddr, 0, len(src))
	for _, a := range src {
		if a == nil {
			continue
		}
		if tpt, _ := peer.SplitAddr(a); len(tpt) > 0 {
			out = append(out, tpt)
		}
		if len(out) == MaxRecordAddrs {
			break
		}
	}
	return out
}

// publishLoop publishes the node's record once the DHT is ready, every
// Config.Refresh after that, and at once whenever the host's addresses
// change. In between, it looks at its routing table after
// Config.FirstRefresh, then at doubling intervals, and republishes when many
// of the peers closest to the record's key are not those it published to
// (see missed): a node's first record only reaches the few peers it knew
// when it joined, and the network around it settles after. A failed publication is retried on
// that fast schedule.
func (d *DHT) publishLoop() {
	select {
	case <-d.ready:
	case <-d.ctx.Done():
		return
	}
	var (
		next        = d.cfg.FirstRefresh // the fast schedule, doubling up to Refresh
		retry       = d.cfg.FirstRefresh // the backoff after a failure, likewise
		lastNearest []peer.ID
		lastPublish time.Time // by the real clock: Config.Now may be skewed in tests
		force       = true
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.addrChanged:
			d.log.Info("addresses changed: republishing")
			force = true
		case <-d.membersChanged:
			d.log.Info("members changed: republishing a record sealed to the new members")
			force = true
		case <-timer.C:
		}
		nearest := d.nearest()
		if force || time.Since(lastPublish) >= d.cfg.Refresh || missed(nearest, lastNearest) {
			// A change that came with this publication is in it.
			select {
			case <-d.addrChanged:
			default:
			}
			ctx, cancel := context.WithTimeout(d.ctx, publishTimeout)
			_, err := d.Publish(ctx)
			cancel()
			if d.ctx.Err() != nil {
				return
			}
			if err != nil {
				d.log.Warn("publishing the node record failed", zap.Error(err), zap.Duration("retry_in", retry))
				force = true
				timer.Reset(retry)
				retry = min(2*retry, d.cfg.Refresh)
				continue
			}
			retry = d.cfg.FirstRefresh
			force, lastPublish, lastNearest = false, time.Now(), nearest
		}
		timer.Reset(min(next, d.cfg.Refresh-time.Since(lastPublish)))
		next = min(2*next, d.cfg.Refresh)
	}
}

// missed reports whether a quarter or more of the peers now nearest to the
// record key (at least one) were not among those nearest when it was last
// published, so probably do not hold it. Republishing on any change would
// make every node of a forming network republish at every check.
func missed(nearest, published []peer.ID) bool {
	n := 0
	for _, p := range nearest {
		if _, found := slices.BinarySearch(published, p); !found {
			n++
		}
	}
	return n > 0 && n >= len(nearest)/4
}

// nearest are the routing table's peers closest to the node's record key:
// where a publication puts the record, as far as this node knows.
func (d *DHT) nearest() []peer.ID {
	ps := d.kad.RoutingTable().NearestPeers(kb.ConvertKey(RecordKey(d.host.ID())), d.kad.BucketSize())
	slices.Sort(ps)
	return ps
}
