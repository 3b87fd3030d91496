package control_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
)

// listNode streams an outbox of n exchanges of size bytes each (n < 0: for
// ever, until the call ends), or with silent its data directory alone and
// then nothing until the call ends; done gets what ListOutbox returned.
type listNode struct {
	fakeNode
	n, size int
	silent  bool
	done    chan error
}

func (l *listNode) ListOutbox(ctx context.Context, req *pb.ListStoredRequest, send func(*pb.ListStoredResponse) error) (err error) {
	defer func() { l.done <- err }()
	if err := send(&pb.ListStoredResponse{DataDir: "/data"}); err != nil {
		return err
	}
	if l.silent {
		<-ctx.Done()
		return ctx.Err()
	}
	payload := bytes.Repeat([]byte{'x'}, l.size)
	for i := 0; l.n < 0 || i < l.n; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		s := &pb.Stored{Id: uint64(i + 1), PayloadSize: int64(l.size), PayloadUtf8: true, Payload: payload}
		if !req.Payloads {
			s.Payload = payload[:min(len(payload), 132)]
		}
		if err := send(&pb.ListStoredResponse{Item: s}); err != nil {
			return err
		}
	}
	return nil
}

func listServe(t *testing.T, n *listNode, opts ...control.DialOption) *control.Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.sock")
	serve(t, path, n)
	c, err := control.Dial(context.Background(), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func waitDone(t *testing.T, n *listNode) error {
	t.Helper()
	select {
	case err := <-n.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the node's ListOutbox did not return")
		return nil
	}
}

// A list larger than any message the client accepts arrives whole: the
// node sends one exchange a message, and the client holds one at a time.
// (ListOutbox was one response holding every payload: a large outbox made
// the node and the client hold it all, gigabytes, and hit the deadline.)
func TestListStreamsItems(t *testing.T) {
	n := &listNode{n: 40, size: 64 << 10, done: make(chan error, 1)}
	c := listServe(t, n, control.WithMaxResponseSize(256<<10)) // the list: 2.5 MiB
	l, err := c.ListOutbox(context.Background(), true, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.DataDir != "/data" {
		t.Fatalf("DataDir %q", l.DataDir)
	}
	got := 0
	for {
		s, err := l.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d exchanges: %v", got, err)
		}
		if got++; s.Id != uint64(got) || len(s.Payload) != n.size {
			t.Fatalf("exchange %d: id %d, payload %d bytes", got, s.Id, len(s.Payload))
		}
	}
	if got != n.n {
		t.Fatalf("%d exchanges, want %d", got, n.n)
	}
	if err := waitDone(t, n); err != nil {
		t.Fatalf("the node's ListOutbox: %v", err)
	}
	// Without payloads, exchanges larger than the bound are listed too.
	n = &listNode{n: 3, size: 1 << 20, done: make(chan error, 1)}
	c = listServe(t, n, control.WithMaxResponseSize(256<<10))
	l, err = c.ListOutbox(context.Background(), false, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 3; i++ {
		if s, err := l.Next(); err != nil || s.PayloadSize != 1<<20 || len(s.Payload) > 132 {
			t.Fatalf("exchange %d without payloads: %v", i, err)
		}
	}
	if _, err := l.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last: %v, want io.EOF", err)
	}
}

// A client that goes away ends the node's work on its list: the node does
// not read the rest of its store for no one.
func TestListEndsWhenClientGoes(t *testing.T) {
	n := &listNode{n: -1, size: 1 << 10, done: make(chan error, 1)}
	c := listServe(t, n)
	l, err := c.ListOutbox(context.Background(), true, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := l.Next(); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if err := waitDone(t, n); err == nil {
		t.Fatal("the node's endless ListOutbox returned nil after its client went")
	}
}

// A node that stops sending fails the list with ErrStalled after the idle
// time, however long the list has run before: there is no deadline for
// the whole list.
func TestListStalled(t *testing.T) {
	n := &listNode{silent: true, done: make(chan error, 1)}
	c := listServe(t, n)
	// Long enough for the data directory, the answer before the silence,
	// to come on a loaded machine (see TestListSlowReaderIsNoStall).
	l, err := c.ListOutbox(context.Background(), false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Next(); !errors.Is(err, control.ErrStalled) {
		t.Fatalf("Next from a silent node: %v, want ErrStalled", err)
	}
	if err := waitDone(t, n); !errors.Is(err, context.Canceled) {
		t.Fatalf("the node's ListOutbox: %v, want context.Canceled", err)
	}
}

// The idle bound is the node's silence, not the caller's: a caller that
// takes longer than it between two Next calls (its output piped to a slow
// reader) still gets the rest. (The bound ran on while the caller worked,
// and such a list failed ErrStalled, blaming the node.)
func TestListSlowReaderIsNoStall(t *testing.T) {
	n := &listNode{n: 3, size: 10, done: make(chan error, 1)}
	c := listServe(t, n)
	// The node's own silence must stay under idle: the call and its first
	// answer come through the socket from the server's goroutines, which a
	// loaded two-core machine under the race detector kept from running
	// for more than 100 ms (ListOutbox failed ErrStalled, 2 runs in 15).
	const idle = time.Second
	l, err := c.ListOutbox(context.Background(), false, idle)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 3 {
		if _, err := l.Next(); err != nil {
			t.Fatalf("item %d: %v", i+1, err)
		}
		// Not a wait for anything: the sleep is the behaviour under test,
		// a caller busy for longer than the idle bound between two Next
		// calls (its output piped to a slow reader). Any time past idle
		// shows the bound running while the caller works.
		time.Sleep(idle + idle/4)
	}
	if _, err := l.Next(); err != io.EOF {
		t.Fatalf("after the last item: %v, want io.EOF", err)
	}
}
