package control_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/control"
)

// A connection that breaks before the node answers (a node killed
// mid-call) is a ConnectionError naming the socket, not a RemoteError: the
// node said nothing. (call made every Connect error a RemoteError, so that
// send printed the transport's "unexpected EOF" as if the node had said it.)
func TestCallConnectionBroken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			// Read a little of the call, then die without answering.
			_, _ = conn.Read(make([]byte, 16))
			_ = conn.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })

	c := dial(t, path)
	_, err = c.Status(context.Background())
	var ce *control.ConnectionError
	if !errors.As(err, &ce) || errors.As(err, new(*control.RemoteError)) {
		t.Fatalf("Status on a connection that broke: %T %v; want a *control.ConnectionError", err, err)
	}
	if ce.Path != path || !strings.Contains(err.Error(), path) {
		t.Fatalf("ConnectionError %q: want it to name %s", err, path)
	}
	if strings.Contains(err.Error(), "Post ") || strings.Contains(err.Error(), "unavailable:") {
		t.Fatalf("ConnectionError %q repeats the call's wrappers", err)
	}
}
