package control_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
)

// fakeNode answers Status with its ID and fails the rest with err.
type fakeNode struct {
	id  string
	err error
}

func (f *fakeNode) Status(context.Context) (*pb.StatusResponse, error) {
	return &pb.StatusResponse{PeerId: f.id}, nil
}
func (f *fakeNode) Peers(context.Context) (*pb.PeersResponse, error) { return nil, f.err }
func (f *fakeNode) Exchange(ctx context.Context, _ *pb.ExchangeRequest) (*pb.ExchangeResponse, error) {
	if f.err == nil {
		<-ctx.Done() // waits as an exchange does, until the caller or the server gives up
		return nil, ctx.Err()
	}
	return nil, f.err
}
func (f *fakeNode) ReloadAllowlist(context.Context) (*pb.ReloadAllowlistResponse, error) {
	return nil, f.err
}
func (f *fakeNode) ListOutbox(context.Context, *pb.ListStoredRequest, func(*pb.ListStoredResponse) error) error {
	return f.err
}
func (f *fakeNode) ListDeadLetters(context.Context, *pb.ListStoredRequest, func(*pb.ListStoredResponse) error) error {
	return f.err
}
func (f *fakeNode) RetryDeadLetters(context.Context, *pb.ExchangesRequest) (*pb.ExchangesResponse, error) {
	return nil, f.err
}
func (f *fakeNode) DropDeadLetters(context.Context, *pb.ExchangesRequest) (*pb.ExchangesResponse, error) {
	return nil, f.err
}
func (f *fakeNode) Check(context.Context, *pb.CheckRequest) (*pb.CheckResponse, error) {
	return nil, f.err
}

func (f *fakeNode) CancelOutbox(context.Context, *pb.ExchangesRequest) (*pb.ExchangesResponse, error) {
	return nil, f.err
}
func (f *fakeNode) SubmitMembership(context.Context, *pb.SubmitMembershipRequest) (*pb.SubmitMembershipResponse, error) {
	return nil, f.err
}

func serve(t *testing.T, path string, n control.Node) *control.Server {
	t.Helper()
	s, err := control.Serve(path, n, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func dial(t *testing.T, path string) *control.Client {
	t.Helper()
	c, err := control.Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServeAndCall(t *testing.T) {
	path := filepath.Join(t.TempDir(), control.SocketName)
	s := serve(t, path, &fakeNode{id: "me", err: fmt.Errorf("%w: no store", control.ErrUnsupported)})
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != control.SocketMode {
		t.Fatalf("socket mode %v, want a socket with %v", fi.Mode(), control.SocketMode)
	}
	c := dial(t, path)
	st, err := c.Status(context.Background())
	if err != nil || st.PeerId != "me" {
		t.Fatalf("Status: %v, %v", st, err)
	}
	_, err = c.ListOutbox(context.Background(), false, 0)
	if !errors.Is(err, control.ErrUnsupported) || err.Error() != "not supported by this node: no store" {
		t.Fatalf("ListOutbox error %q (%T), want ErrUnsupported with the node's text", err, err)
	}
	_, err = c.SubmitMembership(context.Background(), []byte("doc"))
	if !errors.Is(err, control.ErrUnsupported) {
		t.Fatalf("SubmitMembership error %q (%T), want ErrUnsupported", err, err)
	}
	s.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left after Close: %v", err)
	}
	if _, err := control.Dial(context.Background(), path); !errors.Is(err, control.ErrNoNode) {
		t.Fatalf("Dial after Close: %v, want ErrNoNode", err)
	}
}

// Close ends the calls in progress: an exchange's wait does not hold the
// node's shutdown.
func TestCloseEndsCalls(t *testing.T) {
	path := filepath.Join(t.TempDir(), control.SocketName)
	s := serve(t, path, &fakeNode{})
	c := dial(t, path)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Exchange(context.Background(), &pb.ExchangeRequest{})
		errc <- err
	}()
	// Close may come before the call reaches the node; either way the
	// call fails and Close returns.
	s.Close()
	if err := <-errc; err == nil {
		t.Fatal("an exchange in progress succeeded across Close")
	}
}

func TestListenStaleAndInUse(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, control.SocketName)

	// A stale socket: bound, then its listener gone without removing it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	serve(t, path, &fakeNode{id: "new"})
	if st, err := dial(t, path).Status(context.Background()); err != nil || st.PeerId != "new" {
		t.Fatalf("after replacing a stale socket: %v, %v", st, err)
	}

	// A live one is refused, and left alone.
	if _, err := control.Serve(path, &fakeNode{}, zap.NewNop()); !errors.Is(err, control.ErrInUse) {
		t.Fatalf("second Serve: %v, want ErrInUse", err)
	}
	if st, err := dial(t, path).Status(context.Background()); err != nil || st.PeerId != "new" {
		t.Fatalf("the first server after a refused second: %v, %v", st, err)
	}

	// A file that is not a socket is never removed.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := control.Serve(file, &fakeNode{}, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Serve on a file: %v", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Fatalf("the file after a refused Serve: %q, %v", b, err)
	}

	// Nor is a symlink, even to a stale socket: Listen looks at the link.
	stale := filepath.Join(dir, "stale.sock")
	ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(stale, link); err != nil {
		t.Fatal(err)
	}
	if _, err := control.Serve(link, &fakeNode{}, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Serve on a symlink: %v", err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != os.ModeSymlink {
		t.Fatalf("the symlink after a refused Serve: %v, %v", fi, err)
	}
	if fi, err := os.Lstat(stale); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("the symlink's socket after a refused Serve: %v, %v", fi, err)
	}
}

// A path longer than a socket address holds still works (Linux).
func TestLongPath(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux names a socket through /proc/self/fd")
	}
	dir := t.TempDir()
	long := filepath.Join(dir, strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(long, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(long, control.SocketName)
	if len(path) <= 108 {
		t.Fatalf("path %d bytes: not long enough for the test", len(path))
	}
	serve(t, path, &fakeNode{id: "long"})
	if st, err := dial(t, path).Status(context.Background()); err != nil || st.PeerId != "long" {
		t.Fatalf("Status over a long path: %v, %v", st, err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the socket is not at its path: %v", err)
	}
}

// A socket bound and not served yet already holds its path: a second
// node is refused at once, and a client's call made meanwhile is answered
// once the socket is served. Closed unserved, the socket goes; served,
// closing the Socket leaves the server alone.
func TestBindHoldsPathUntilServed(t *testing.T) {
	path := filepath.Join(t.TempDir(), control.SocketName)
	s, err := control.Bind(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := control.Bind(path); !errors.Is(err, control.ErrInUse) {
		t.Fatalf("Bind on a socket bound but not served: %v, want ErrInUse", err)
	}
	s.Close()
	s.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a bound socket after Close: %v, want it removed", err)
	}
	if _, err := s.Serve(&fakeNode{}, zap.NewNop()); err == nil {
		t.Fatal("Serve after Close succeeded")
	}

	if s, err = control.Bind(path); err != nil {
		t.Fatal(err)
	}
	c := dial(t, path)
	got := make(chan error, 1)
	go func() {
		st, err := c.Status(context.Background())
		if err == nil && st.PeerId != "late" {
			err = fmt.Errorf("status from %q", st.PeerId)
		}
		got <- err
	}()
	srv, err := s.Serve(&fakeNode{id: "late"}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if err := <-got; err != nil {
		t.Fatalf("a call made before Serve: %v", err)
	}
	s.Close()
	if st, err := dial(t, path).Status(context.Background()); err != nil || st.PeerId != "late" {
		t.Fatalf("the server after closing its Socket: %v, %v", st, err)
	}
}
