package handler_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// errCrashed is what a crashed store answers: nothing reaches the disk any
// more, as when the process died.
var errCrashed = errors.New("test: the process crashed")

// crashStore is a store that can "crash": from then on it writes nothing,
// so what a handler does afterwards is as lost as after a SIGKILL. Closing
// the crashed handler then only stops its goroutines.
type crashStore struct {
	*store.Store
	mu      sync.Mutex
	dead    bool
	died    chan struct{} // closed when it crashes
	commits int
	crashAt int // when positive, the commit that crashes the store
}

func (c *crashStore) alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commits++
	if c.crashAt > 0 && c.commits >= c.crashAt {
		c.dieLocked()
	}
	return !c.dead
}

func (c *crashStore) dieLocked() {
	if !c.dead {
		c.dead = true
		close(c.died)
	}
}

// crashAt crashes the store at its k-th commit from now.
func (c *crashStore) crashAtCommit(k int) {
	c.mu.Lock()
	c.crashAt = c.commits + k
	c.mu.Unlock()
}

func (c *crashStore) crash() {
	c.mu.Lock()
	c.dieLocked()
	c.mu.Unlock()
}

func (c *crashStore) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

func (c *crashStore) Commit(b *store.Batch) error {
	if !c.alive() {
		return errCrashed
	}
	return c.Store.Commit(b)
}

func (c *crashStore) CommitAsync(b *store.Batch, done func(error)) {
	if !c.alive() {
		if done != nil {
			done(errCrashed)
		}
		return
	}
	c.Store.CommitAsync(b, done)
}

// node is one operator's durable handler across restarts: same key, same
// listen address, same data directory.
type node struct {
	t      *testing.T
	id     tu.Identity
	list   *allowlist.List
	dir    string
	listen ma.Multiaddr
	opts   []handler.Option
	st     *crashStore
	h      *handler.Handler
}

func newNode(t *testing.T, id tu.Identity, list *allowlist.List, opts ...handler.Option) *node {
	// A port of its own, which no other socket takes while it restarts.
	n := &node{t: t, id: id, list: list, dir: t.TempDir(), opts: opts, listen: tu.LoopbackAddr(t)}
	n.start()
	t.Cleanup(n.stop)
	return n
}

// start opens the store and starts the handler on it.
func (n *node) start() {
	n.t.Helper()
	s, err := store.Open(n.dir, store.Options{})
	if err != nil {
		n.t.Fatal(err)
	}
	n.st = &crashStore{Store: s, died: make(chan struct{})}
	opts := append([]handler.Option{fast, handler.WithStore(n.st)}, n.opts...)
	h, err := handler.New(n.listen, n.id.Key, n.list, opts...)
	if err != nil {
		s.Close()
		n.t.Fatal(err)
	}
	n.h = h
}

// stop closes the handler, then its store.
func (n *node) stop() {
	if n.h == nil {
		return
	}
	n.h.Close()
	n.st.Store.Close()
	n.h = nil
}

// crash loses everything the handler has not yet written, then stops it
// at once: exchanges in flight are not given time to complete.
func (n *node) crash() {
	n.st.crash()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n.h.Shutdown(ctx)
	n.stop()
}

// restart crashes (or stops) the node and starts it again.
func (n *node) restart(crash bool) {
	if crash {
		n.crash()
	} else {
		n.stop()
	}
	n.start()
}

func (n *node) addr() ma.Multiaddr { return n.h.Addrs()[0] }

// requestWithoutAddr has a send b "ping" as a request given no address,
// once a has b's address cached from a message before: the stored request
// has no address, so a resumed one waits for the Resolver. It returns the
// request's ID and the Request b received.
func requestWithoutAddr(t *testing.T, a, b *node) (handler.ExchangeID, *handler.Request) {
	t.Helper()
	sid, err := a.h.Send(b.id.ID, b.addr(), []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a.h, sid), true, handler.ReasonOK)
	id, err := a.h.Request(b.id.ID, nil, []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	return id, nextRequest(t, b.h)
}
