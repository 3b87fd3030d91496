package control_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
)

// submitNode counts the documents that reach it.
type submitNode struct {
	fakeNode
	calls atomic.Int32
}

func (n *submitNode) SubmitMembership(context.Context, *pb.SubmitMembershipRequest) (*pb.SubmitMembershipResponse, error) {
	n.calls.Add(1)
	return &pb.SubmitMembershipResponse{Version: 2}, nil
}

// A request larger than the server's bound is refused before it reaches
// the node: a client cannot make the node read (and hold) a body of any
// size. The node's own limit lets a request of its size through.
func TestServeBoundsRequestSize(t *testing.T) {
	n := &submitNode{}
	path := filepath.Join(t.TempDir(), control.SocketName)
	serve(t, path, n)
	c := dial(t, path)
	_, err := c.SubmitMembership(context.Background(), make([]byte, 4*control.DefaultMaxRequestSize))
	if re, ok := errors.AsType[*control.RemoteError](err); !ok || re.Code != connect.CodeResourceExhausted {
		t.Fatalf("a request of %d bytes: %v (%T), want resource_exhausted", 4*control.DefaultMaxRequestSize, err, err)
	}
	if got := n.calls.Load(); got != 0 {
		t.Fatalf("the node was called %d times with the oversized request", got)
	}
	if _, err := c.SubmitMembership(context.Background(), make([]byte, control.DefaultMaxRequestSize/2)); err != nil {
		t.Fatalf("a request within the bound: %v", err)
	}

	big := filepath.Join(t.TempDir(), control.SocketName)
	s, err := control.Serve(big, n, zap.NewNop(), control.WithMaxRequestSize(5*control.DefaultMaxRequestSize))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, err := dial(t, big).SubmitMembership(context.Background(), make([]byte, 4*control.DefaultMaxRequestSize)); err != nil {
		t.Fatalf("a request within WithMaxRequestSize: %v", err)
	}
}
