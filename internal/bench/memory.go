package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// IdleKind says what each idle connection of IdleConnMemory carried.
type IdleKind int

const (
	// IdleExchange is one exchange through the handler, both ends keeping
	// the connection (KeepConnection, no idle timeout).
	IdleExchange IdleKind = iota
	// IdleAckedSend is one acked message between two p2p nodes.
	IdleAckedSend
	// IdleBareEcho is one echo round trip between bare go-libp2p hosts, on
	// a stream closed afterwards: a connection with nothing open on it.
	IdleBareEcho
	// IdleExchangeQuiet is IdleExchange measured once the connection has
	// been idle long enough for its message stream to close
	// (p2p.Config.StreamIdleTimeout, shortened here to idleStreamTimeout).
	IdleExchangeQuiet
)

// MaxIdleConns is the most connections IdleConnMemory makes in one run.
const MaxIdleConns = 512

// idleStreamTimeout is IdleExchangeQuiet's StreamIdleTimeout: short, so
// that the measurement waits a fraction of a second, not minutes.
const idleStreamTimeout = 20 * time.Millisecond

// IdleUse says how IdleConnMemory's connections carry their one message.
// The same for ours and the baseline, so that both pay the same transient
// costs.
type IdleUse int

const (
	// OneAtATime uses each connection once its predecessor's message is
	// done: what stays is what an idle connection keeps.
	OneAtATime IdleUse = iota
	// AllAtOnce sends every connection's message at the same time. What
	// the burst allocated and freed can leave the runtime's heap and
	// stack spans partly used afterwards (counted in use, reused by later
	// allocations), so this measures the burst's aftermath as well.
	AllAtOnce
)

// ConnMemory is what each idle connection holds in this process: both of
// its ends, since both hosts run here.
type ConnMemory struct {
	// Bytes is heap in use plus goroutine stacks in use, after a garbage
	// collection, per connection.
	Bytes float64
	// Goroutines per connection.
	Goroutines float64
}

// IdleConnMemory starts one host and conns others of kind, measures the
// process's memory, has the first exchange one message of size bytes with
// each of the others as use says (so that conns connections stay open and
// idle), measures again and stops them all. The difference divided by
// conns is the cost of an idle connection that has been used: the hosts'
// own memory is in both measurements and cancels out.
func IdleConnMemory(ctx context.Context, kind IdleKind, use IdleUse, conns, size int) (ConnMemory, error) {
	if conns < 1 || conns > MaxIdleConns {
		return ConnMemory{}, fmt.Errorf("between 1 and %d connections needed (got %d)", MaxIdleConns, conns)
	}
	if use != OneAtATime && use != AllAtOnce {
		return ConnMemory{}, fmt.Errorf("unknown use of idle connections %d", use)
	}
	atOnce := use == AllAtOnce
	var (
		carry func() error
		stop  func()
	)
	switch kind {
	case IdleExchange, IdleExchangeQuiet:
		quiet := kind == IdleExchangeQuiet
		hub, err := NewHandlerHub(conns, func(c *handler.Config) {
			c.KeepConnection = true
			if quiet {
				c.Node.StreamIdleTimeout = idleStreamTimeout
			}
		})
		if err != nil {
			return ConnMemory{}, err
		}
		carry = func() error {
			if err := hub.exchangeEach(ctx, size, atOnce); err != nil {
				return err
			}
			// The peers' side of an exchange ends when the hub's ack of the
			// reply arrives, after the hub's own Outcome.
			if err := hub.AwaitServed(ctx, conns); err != nil || !quiet {
				return err
			}
			hosts := []host.Host{hub.Hub.Node().Host()}
			for _, p := range hub.Peers {
				hosts = append(hosts, p.Node().Host())
			}
			return awaitNoStreams(ctx, hosts, 2*conns)
		}
		stop = hub.Close
	case IdleAckedSend:
		hub, err := newNodeHub(conns)
		if err != nil {
			return ConnMemory{}, err
		}
		carry = func() error { return hub.sendEach(ctx, size, atOnce) }
		stop = hub.close
	case IdleBareEcho:
		hub, err := NewBareHub(conns)
		if err != nil {
			return ConnMemory{}, err
		}
		carry = func() error { return hub.echoEach(ctx, size, atOnce) }
		stop = hub.Close
	default:
		return ConnMemory{}, fmt.Errorf("unknown kind of idle connection %d", kind)
	}
	defer stop()
	before := memorySnapshot()
	if err := carry(); err != nil {
		return ConnMemory{}, err
	}
	after := memorySnapshot()
	n := float64(conns)
	return ConnMemory{
		Bytes:      float64(after.bytes-before.bytes) / n,
		Goroutines: float64(after.goroutines-before.goroutines) / n,
	}, nil
}

type memSnapshot struct {
	bytes      int64
	goroutines int
}

// memorySnapshot collects garbage and reads heap and stack in use. Two
// collections: the first frees what became garbage, the second what only
// finalizers and cleanups released.
func memorySnapshot() memSnapshot {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSnapshot{bytes: int64(ms.HeapInuse + ms.StackInuse), goroutines: runtime.NumGoroutine()}
}

// exchangeEach has the hub exchange one message of size bytes with each
// of its peers: all at once, or each once the previous exchange has ended.
func (h *HandlerHub) exchangeEach(ctx context.Context, size int, atOnce bool) error {
	if atOnce {
		_, err := h.Exchanges(ctx, len(h.Peers), size)
		return err
	}
	for i := range h.Peers {
		if _, err := h.exchanges(ctx, h.to[i:i+1], 1, size); err != nil {
			return err
		}
	}
	return nil
}

// echoEach connects the client to every server, echoes one message of size
// bytes on a stream of its own and closes the stream, leaving the
// connection open: all at once, or one server after another.
func (h *BareHub) echoEach(ctx context.Context, size int, atOnce bool) error {
	echo := func(srv host.Host) error {
		out, in := make([]byte, size), make([]byte, size)
		e, err := openEcho(ctx, h.Client, peer.AddrInfo{ID: srv.ID(), Addrs: srv.Addrs()})
		if err != nil {
			return err
		}
		if err := echoRound(e.s, out, in); err != nil {
			return fmt.Errorf("echo: %w", err)
		}
		return e.s.Close()
	}
	if !atOnce {
		for _, srv := range h.Servers {
			if err := echo(srv); err != nil {
				return err
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, len(h.Servers))
	for i, srv := range h.Servers {
		wg.Go(func() { errs[i] = echo(srv) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// nodeHub is one p2p node and others, all allowlisting one another; the
// others' received data is drained by goroutines that close stops.
type nodeHub struct {
	hub   *p2p.Node
	peers []*p2p.Node
	done  chan struct{} // closed when every drain goroutine has returned
}

func newNodeHub(n int) (*nodeHub, error) {
	cs, err := groupConfigs(p2p.Ed25519, n+1)
	if err != nil {
		return nil, err
	}
	nodes := make([]*p2p.Node, 0, n+1)
	for _, c := range cs {
		node, err := p2p.New(c)
		if err != nil {
			for _, started := range nodes {
				started.Close()
			}
			return nil, err
		}
		nodes = append(nodes, node)
	}
	h := &nodeHub{hub: nodes[0], peers: nodes[1:], done: make(chan struct{})}
	drained := make(chan struct{}, n)
	for _, p := range h.peers {
		go func() {
			defer func() { drained <- struct{}{} }()
			for range p.Receiver() {
			}
		}()
	}
	go func() {
		defer close(h.done)
		for range n {
			<-drained
		}
	}()
	return h, nil
}

func (h *nodeHub) close() {
	h.hub.Close()
	for _, p := range h.peers {
		p.Close()
	}
	<-h.done
}

// sendEach sends one message of size bytes to every peer and waits for
// every ack: all at once, or each once the previous one is acked.
func (h *nodeHub) sendEach(ctx context.Context, size int, atOnce bool) error {
	data := make([]byte, size)
	send := func(i int) error {
		p := h.peers[i]
		msg := p2p.SendMsg{Peer: p.ID(), Addr: p.Addrs()[0], ID: uint64(i), Data: data}
		select {
		case h.hub.Sender() <- msg:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !atOnce {
		for i := range h.peers {
			if err := send(i); err != nil {
				return err
			}
			if err := h.awaitAcks(ctx, 1); err != nil {
				return err
			}
		}
		return nil
	}
	for i := range h.peers {
		if err := send(i); err != nil {
			return err
		}
	}
	return h.awaitAcks(ctx, len(h.peers))
}

// awaitAcks waits for n Statuses, each of which must be OK.
func (h *nodeHub) awaitAcks(ctx context.Context, n int) error {
	for acked := 0; acked < n; {
		select {
		case ev, ok := <-h.hub.Receiver():
			if !ok {
				return errors.New("node closed")
			}
			if st, ok := ev.(p2p.Status); ok {
				if !st.OK {
					return fmt.Errorf("message %d: %s: %v", st.MsgID, st.Reason, st.Err)
				}
				acked++
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// awaitNoStreams waits until hosts have no message stream open, and fails
// if fewer than conns connection ends remain open. There is no event for a
// stream's end to wait on, so it looks every few milliseconds.
func awaitNoStreams(ctx context.Context, hosts []host.Host, conns int) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		open, streams := 0, 0
		for _, h := range hosts {
			for _, c := range h.Network().Conns() {
				open++
				for _, s := range c.GetStreams() {
					if s.Protocol() == p2p.ProtocolID {
						streams++
					}
				}
			}
		}
		switch {
		case open < conns:
			return fmt.Errorf("%d of %d connection ends closed while idle", conns-open, conns)
		case streams == 0:
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("%d message streams still open: %w", streams, ctx.Err())
		}
	}
}
