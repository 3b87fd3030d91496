package bench

import (
	"bytes"
	"context"
	"runtime/pprof"
	"strings"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
)

// A CPU profile of a HandlerHub can tell the hub's work from its peers'
// (docs/performance.md, Stop 39): the goroutines of both sides' handlers,
// and of the connections the hub dialed, carry their side's label.
func TestHandlerHubLabelsItsSides(t *testing.T) {
	// Kept, the connection's goroutines are there to read after the
	// exchange, which would otherwise close it.
	hub, err := NewHandlerHub(1, func(c *handler.Config) { c.KeepConnection = true })
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	if _, err := hub.Exchanges(context.Background(), 1, 64); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	// In the debug=1 form each group of goroutines is a paragraph: a count,
	// its labels, then its stack.
	stacks := map[string]int{}
	for _, g := range strings.Split(b.String(), "\n\n") {
		for _, side := range []string{sideHub, sidePeer} {
			if strings.Contains(g, `"side":"`+side+`"`) && strings.Contains(g, "go-yamux") {
				stacks[side]++
			}
		}
	}
	if stacks[sideHub] == 0 || stacks[sidePeer] == 0 {
		t.Fatalf("connection goroutines labeled per side: %v, want both sides\n%s", stacks, b.String())
	}
}
