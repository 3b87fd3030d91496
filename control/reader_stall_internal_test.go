package control

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
)

// endlessNode lists an endless outbox until a send fails, and reports
// that failure on done.
type endlessNode struct {
	Node
	done chan error
}

func (n endlessNode) ListOutbox(ctx context.Context, _ *pb.ListStoredRequest, send func(*pb.ListStoredResponse) error) error {
	err := send(&pb.ListStoredResponse{DataDir: "/data"})
	payload := bytes.Repeat([]byte{'x'}, 64<<10)
	for i := uint64(1); err == nil; i++ {
		err = send(&pb.ListStoredResponse{Item: &pb.Stored{Id: i, PayloadSize: int64(len(payload)), Payload: payload}})
	}
	n.done <- err
	return err
}

// A client that stops reading a list has it cut off after the stall bound:
// the node's send fails and its list returns, freeing its goroutine (it
// waited for as long as the client lived). The client, reading again,
// learns that its own pause was why, not that the node died.
func TestListCutOffWhenReaderStalls(t *testing.T) {
	const stall = 200 * time.Millisecond
	path := filepath.Join(t.TempDir(), SocketName)
	n := endlessNode{done: make(chan error, 1)}
	s, err := Serve(path, n, zap.NewNop(), func(c *serveConfig) { c.stall = stall })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.readerStall = stall
	l, err := c.ListOutbox(context.Background(), true, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Next(); err != nil {
		t.Fatal(err)
	}
	// The client reads nothing more; the node gives up on it.
	select {
	case err := <-n.done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the node's send failed with %v, want the write deadline", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the node still sends to a client that stopped reading")
	}
	for {
		_, err := l.Next()
		if err == nil {
			continue // what was in flight before the cut
		}
		if errors.Is(err, io.EOF) || !errors.Is(err, ErrReaderStalled) {
			t.Fatalf("after the cut: %v, want ErrReaderStalled", err)
		}
		break
	}
}
