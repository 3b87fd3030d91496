package control

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb/pbconnect"
)

// statusNode answers Status; nothing else is called.
type statusNode struct{ Node }

func (statusNode) Status(context.Context) (*pb.StatusResponse, error) {
	return &pb.StatusResponse{PeerId: "me"}, nil
}

// A client that makes a call and then keeps its connection open without
// using it has the connection closed by the server: a long-running node
// does not hold a descriptor and a goroutine per such client for ever.
func TestIdleConnectionClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	s, err := Serve(path, statusNode{}, zap.NewNop(), func(c *serveConfig) { c.idle = 100 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "POST " + pbconnect.ControlStatusProcedure + " HTTP/1.1\r\nHost: p2pnode\r\n" +
		"Content-Type: application/proto\r\nContent-Length: 0\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	// The wait for the server to hang up is bounded by this deadline; an
	// idle connection kept open runs into it.
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || strings.Contains(res.Header.Get("Connection"), "close") {
		t.Fatalf("Status answered %s, connection %q: want 200, kept alive", res.Status, res.Header.Get("Connection"))
	}
	_, err = br.ReadByte()
	if !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %v, want EOF (closed by the server)", err)
	}
}
