package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// NodePair is two project nodes on loopback that allowlist each other.
type NodePair struct {
	A, B *p2p.Node
	// Direct makes SendAcked send with A.SendMessage, Send's fast way,
	// rather than through the Sender channel.
	Direct bool
	done   chan struct{}
}

// NewNodePair starts the two nodes; B's received data is drained by a
// goroutine that Close stops, as an application reading promptly would.
func NewNodePair(mutate func(*p2p.Config)) (*NodePair, error) {
	ca, cb, err := pairConfigs(p2p.Secp256k1)
	if err != nil {
		return nil, err
	}
	start := func(k p2p.Config) (*p2p.Node, error) {
		if mutate != nil {
			mutate(&k)
		}
		return p2p.New(k)
	}
	a, err := start(ca)
	if err != nil {
		return nil, err
	}
	b, err := start(cb)
	if err != nil {
		a.Close()
		return nil, err
	}
	p := &NodePair{A: a, B: b, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for range b.Receiver() {
		}
	}()
	return p, nil
}

// Close stops both nodes and the drain goroutine.
func (p *NodePair) Close() {
	p.A.Close()
	p.B.Close()
	<-p.done
}

// SendResult is the outcome of SendAcked.
type SendResult struct {
	Elapsed time.Duration
	// Busy counts messages the receiver answered "busy" (its application
	// buffer was full) and that were sent again, as a caller would.
	Busy int
}

// SendAcked times n acked messages of size bytes from A to B over a warm
// connection with up to inflight awaiting their ack at once. Every message
// must end acked OK; one answered busy is sent again.
func (p *NodePair) SendAcked(ctx context.Context, n, inflight, size int) (SendResult, error) {
	var res SendResult
	data := make([]byte, size)
	to := p.B.ID()
	send := func(id int) error {
		m := p2p.SendMsg{Peer: to, ID: uint64(id), Data: data}
		if p.Direct {
			return p.A.SendMessage(ctx, m)
		}
		p.A.Sender() <- m
		return nil
	}
	if err := p.Warm(ctx); err != nil {
		return res, err
	}
	start := time.Now()
	sent, acked := 0, 0
	for ; sent < min(inflight, n); sent++ {
		if err := send(sent); err != nil {
			return res, err
		}
	}
	for acked < n {
		st, err := p.awaitStatus(ctx)
		if err != nil {
			return res, err
		}
		if st.Reason == p2p.ReasonBusy {
			res.Busy++
			if err := send(int(st.MsgID)); err != nil {
				return res, err
			}
			continue
		}
		acked++
		if sent < n {
			if err := send(sent); err != nil {
				return res, err
			}
			sent++
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// Warm connects A to B and opens the message stream, so that timed work
// measures messages, not the dial.
func (p *NodePair) Warm(ctx context.Context) error {
	p.A.Sender() <- p2p.SendMsg{Peer: p.B.ID(), Addr: p.B.Addrs()[0], Data: []byte("warm")}
	_, err := p.awaitStatus(ctx)
	return err
}

// awaitStatus returns the next Status: OK or busy; anything else is an error.
func (p *NodePair) awaitStatus(ctx context.Context) (p2p.Status, error) {
	for {
		select {
		case ev, ok := <-p.A.Receiver():
			if !ok {
				return p2p.Status{}, errors.New("node closed")
			}
			if st, ok := ev.(p2p.Status); ok {
				if !st.OK && st.Reason != p2p.ReasonBusy {
					return st, fmt.Errorf("message %d: %s: %v", st.MsgID, st.Reason, st.Err)
				}
				return st, nil
			}
		case <-ctx.Done():
			return p2p.Status{}, ctx.Err()
		}
	}
}

// Rate converts n operations in d to operations per second.
func Rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
