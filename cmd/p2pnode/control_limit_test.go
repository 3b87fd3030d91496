package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// The control server's bound on a request lets through an exchange of the
// node's largest message and a membership document of the largest size,
// whatever --max-message-size says.
func TestControlRequestFitsLargestMessage(t *testing.T) {
	for _, maxMessage := range []int{1 << 10, 1 << 20, 16 << 20} {
		limit := maxControlRequest(maxMessage)
		ex := &pb.ExchangeRequest{PeerId: testPeer, Addr: "/dns4/" + strings.Repeat("a", 253) + "/tcp/65535/p2p/" + testPeer,
			Data: make([]byte, maxMessage), OneWay: true}
		if n := proto.Size(ex); n > limit {
			t.Errorf("max message %d: an exchange request of %d bytes, over the bound %d", maxMessage, n, limit)
		}
		doc := &pb.SubmitMembershipRequest{Document: make([]byte, membership.MaxDocumentSize)}
		if n := proto.Size(doc); n > limit {
			t.Errorf("max message %d: a membership request of %d bytes, over the bound %d", maxMessage, n, limit)
		}
	}
}

// A list the node's stop cut short says so, not "context canceled".
func TestListCutByStopSaysSo(t *testing.T) {
	c := &nodeControl{r: &runner{}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.listErr(ctx, ctx.Err()); !errors.Is(err, context.Canceled) {
		t.Fatalf("a list its caller left: %v, want context.Canceled", err)
	}
	c.r.ops.stopping.Store(true)
	if err := c.listErr(ctx, ctx.Err()); !errors.Is(err, control.ErrStopping) {
		t.Fatalf("a list the stop cut: %v, want ErrStopping", err)
	}
	if err := c.listErr(context.Background(), nil); err != nil {
		t.Fatalf("a list done: %v", err)
	}
}

// A stopping node refuses a reload and a check: the reload's event would
// come amid the stop's output, after its watchers stopped; the check's
// dials would race the host's close.
func TestStoppingRefusesReloadAndCheck(t *testing.T) {
	c := &nodeControl{r: &runner{}}
	c.r.ops.stopping.Store(true)
	if _, err := c.ReloadAllowlist(context.Background()); !errors.Is(err, control.ErrStopping) {
		t.Errorf("reload while stopping: %v", err)
	}
	if _, err := c.Check(context.Background(), &pb.CheckRequest{PeerId: testPeer}); !errors.Is(err, control.ErrStopping) {
		t.Errorf("check while stopping: %v", err)
	}
}
