package control

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
)

// endlessNode lists an endless outbox until a send fails, and reports
// that failure on done. It sends the data directory and a first, small
// exchange, then waits for reading to be closed (the client has read them)
// before it floods: the node's stall bound then counts only the time after
// the client stopped reading. Before that the bound also ran while the
// client read (the node compressing 64 KiB payloads under the race detector
// on a loaded machine took up to half a second a send), and a short bound
// cut off a client that had not stopped.
type endlessNode struct {
	Node
	reading chan struct{}
	done    chan error
}

func (n endlessNode) ListOutbox(ctx context.Context, _ *pb.ListStoredRequest, send func(*pb.ListStoredResponse) error) error {
	err := send(&pb.ListStoredResponse{DataDir: "/data"})
	if err == nil {
		err = send(&pb.ListStoredResponse{Item: &pb.Stored{Id: 1}})
	}
	if err == nil {
		select {
		case <-n.reading:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	// Incompressible, so that what the client leaves unread fills the
	// socket's buffer in a few sends (the node gzips what it sends).
	payload := make([]byte, 64<<10)
	_, _ = rand.NewChaCha8([32]byte{}).Read(payload)
	for i := uint64(2); err == nil; i++ {
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
	// Far longer than a send takes on a loaded machine, while the client
	// is still reading (endlessNode).
	const stall = 2 * time.Second
	path := filepath.Join(t.TempDir(), SocketName)
	n := endlessNode{reading: make(chan struct{}), done: make(chan error, 1)}
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
	close(n.reading)
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
