package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// NodeExchangeScaling is ExchangeScaling with p2p nodes in place of the
// handlers, the reference that tells the handler's share of the cost from
// the node's: the hub sends each peer a message, the peer answers it on the
// stream it came in on, and the hub's next message to that peer leaves once
// the answer has arrived. Both messages are acknowledged, their acks
// riding with the next message the other way (SendMsg.LazyAck), as an
// exchange's are: the same frames and writes as an exchange, without the
// handler. The handler rides on the node, so ExchangeScaling's ratio can
// reach at most this one's.
func NodeExchangeScaling(ctx context.Context, peers, size int) (*Workload, error) {
	hub, err := newNodeExchangeHub(peers)
	if err != nil {
		return nil, err
	}
	return againstBareHub(ctx, peers, size, hub.exchanges, hub.close)
}

// NodeKeptConn is GRPCKeptConn's exchanges with p2p nodes in place of the
// handlers, inFlight outstanding on one kept connection: the same messages
// and acks as NodeExchangeScaling's, the reference that tells the handler's
// share of the kept connection's cost from the node's. Only Ours is set:
// it is for profiling beside GRPCKeptConn's and GRPCBareKeptConn's.
func NodeKeptConn(ctx context.Context, size, inFlight int) (*Workload, error) {
	hub, err := newNodeExchangeHub(1)
	if err != nil {
		return nil, err
	}
	hub.inFlight = inFlight
	w := &Workload{
		Ours:  func(k int) (time.Duration, error) { return hub.exchanges(ctx, k, size) },
		Close: hub.close,
	}
	if _, err := w.Ours(inFlight); err != nil {
		w.Close()
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	return w, nil
}

// nodeExchangeHub is one p2p node (hub) and others that answer every
// message with its bytes, each from a goroutine that close stops.
type nodeExchangeHub struct {
	hub   *p2p.Node
	peers []*p2p.Node
	to    []target
	index map[peer.ID]int // peer -> its place in peers
	next  uint64          // the hub's last message ID
	// inFlight is the messages the hub keeps outstanding with each peer
	// (1 unless set before the first exchanges).
	inFlight int
	wg       sync.WaitGroup

	// failed holds the first failure a peer saw (an answer not
	// acknowledged), which the hub's next exchanges report.
	failed atomic.Pointer[error]
}

func newNodeExchangeHub(n int) (*nodeExchangeHub, error) {
	if n < 1 {
		return nil, fmt.Errorf("a hub needs at least one peer (got %d)", n)
	}
	cs, err := groupConfigs(p2p.Ed25519, n+1)
	if err != nil {
		return nil, err
	}
	h := &nodeExchangeHub{index: make(map[peer.ID]int, n), inFlight: 1}
	for i, c := range cs {
		// Unboxed Data and Status, as the handler reads them.
		c.Deliveries = true
		node, err := p2p.New(c)
		if err != nil {
			h.close()
			return nil, err
		}
		if i == 0 {
			h.hub = node
			continue
		}
		h.index[node.ID()] = len(h.peers)
		h.peers = append(h.peers, node)
		h.to = append(h.to, target{node.ID(), node.Addrs()[0]})
		h.wg.Go(func() { h.answer(node) })
	}
	return h, nil
}

// answer sends back every message node receives, until node closes.
func (h *nodeExchangeHub) answer(node *p2p.Node) {
	var id uint64
	for d := range node.Deliveries() {
		switch d.Kind {
		case p2p.DeliveredData:
			id++
			m := p2p.SendMsg{Peer: d.Data.From, ID: id, Data: d.Data.Bytes, LazyAck: true, Via: d.Data.Origin}
			if err := node.SendMessage(context.Background(), m); err != nil {
				h.fail(fmt.Errorf("answer: %w", err))
			}
		case p2p.DeliveredStatus:
			if !d.Status.OK {
				h.fail(fmt.Errorf("answer %d: %s: %v", d.Status.MsgID, d.Status.Reason, d.Status.Err))
			}
		}
	}
}

func (h *nodeExchangeHub) fail(err error) { h.failed.CompareAndSwap(nil, &err) }

// exchanges makes n exchanges of size bytes from the hub, spread over its
// peers in turn, inFlight outstanding per peer (one as HandlerHub.Exchanges
// has): a peer's next message leaves when one of its answers arrives.
func (h *nodeExchangeHub) exchanges(ctx context.Context, n, size int) (time.Duration, error) {
	msg := make([]byte, size)
	sent := 0
	send := func(i int) error {
		h.next++
		sent++
		return h.hub.SendMessage(ctx, p2p.SendMsg{Peer: h.to[i].id, Addr: h.to[i].addr, ID: h.next, Data: msg, LazyAck: true})
	}
	start := time.Now()
	for i := range min(n, len(h.peers)*h.inFlight) {
		if err := send(i % len(h.peers)); err != nil {
			return 0, err
		}
	}
	for answered := 0; answered < n; {
		if p := h.failed.Load(); p != nil {
			return 0, *p
		}
		var d p2p.Delivery
		select {
		case ev, ok := <-h.hub.Deliveries():
			if !ok {
				return 0, errors.New("hub node closed")
			}
			d = ev
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		switch d.Kind {
		case p2p.DeliveredData:
			answered++
			i, known := h.index[d.Data.From]
			if !known {
				return 0, fmt.Errorf("a message from %s, not a peer of the hub", d.Data.From)
			}
			if sent < n {
				if err := send(i); err != nil {
					return 0, err
				}
			}
		case p2p.DeliveredStatus:
			if !d.Status.OK {
				return 0, fmt.Errorf("message %d: %s: %v", d.Status.MsgID, d.Status.Reason, d.Status.Err)
			}
		}
	}
	return time.Since(start), nil
}

// close stops every node and the peers' goroutines.
func (h *nodeExchangeHub) close() {
	if h.hub != nil {
		h.hub.Close()
	}
	for _, p := range h.peers {
		p.Close()
	}
	h.wg.Wait()
}
