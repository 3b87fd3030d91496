package control

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"syscall"

	"connectrpc.com/connect"

	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb/pbconnect"
)

// ErrNoNode is returned by Dial when no node serves the socket: it does
// not exist, or nothing accepts on it (a stale socket).
var ErrNoNode = errors.New("no running node")

// RemoteError is an error the node returned, with its Connect code.
type RemoteError struct {
	Code connect.Code
	Msg  string
}

func (e *RemoteError) Error() string { return e.Msg }

// Is makes a RemoteError match the Node error its code stands for.
func (e *RemoteError) Is(target error) bool {
	switch target {
	case ErrInvalid:
		return e.Code == connect.CodeInvalidArgument
	case ErrUnsupported:
		return e.Code == connect.CodeFailedPrecondition
	case ErrStopping:
		return e.Code == connect.CodeUnavailable
	case context.DeadlineExceeded:
		return e.Code == connect.CodeDeadlineExceeded
	}
	return false
}

// Client calls the Control service of the node at one socket.
type Client struct {
	path string
	hc   *http.Client
	c    pbconnect.ControlClient
}

// Dial checks that a node serves the socket at path and returns a client
// for it. The error wraps ErrNoNode when none does.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	dial := func(ctx context.Context) (net.Conn, error) {
		addr, done, err := sockaddrPath(path)
		if err != nil {
			return nil, err
		}
		defer done()
		return d.DialContext(ctx, "unix", addr)
	}
	conn, err := dial(ctx)
	switch {
	case err == nil:
		_ = conn.Close()
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("%w at %s", ErrNoNode, path)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("control socket %s: permission denied: run as the node's user", path)
	default:
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	hc := &http.Client{Transport: &http.Transport{
		DialContext:        func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		DisableCompression: true,
		// Before the server closes it (idleTimeout): a call is never
		// sent on a connection the server is closing, which would fail
		// it, as calls are not retried.
		IdleConnTimeout: idleTimeout / 2,
	}}
	// The host is a placeholder: every connection goes to the socket.
	return &Client{path: path, hc: hc, c: pbconnect.NewControlClient(hc, "http://p2pnode")}, nil
}

// Close closes the client's idle connections to the socket.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Path is the socket's path.
func (c *Client) Path() string { return c.path }

// Status asks the node for its status.
func (c *Client) Status(ctx context.Context) (*pb.StatusResponse, error) {
	return call(ctx, c.c.Status, &pb.StatusRequest{})
}

// Peers asks the node for its peers.
func (c *Client) Peers(ctx context.Context) (*pb.PeersResponse, error) {
	return call(ctx, c.c.Peers, &pb.PeersRequest{})
}

// Exchange runs one exchange through the node and waits for its outcome
// until ctx ends.
func (c *Client) Exchange(ctx context.Context, req *pb.ExchangeRequest) (*pb.ExchangeResponse, error) {
	return call(ctx, c.c.Exchange, req)
}

// ReloadAllowlist makes the node read its allowlist and routes files again.
func (c *Client) ReloadAllowlist(ctx context.Context) (*pb.ReloadAllowlistResponse, error) {
	return call(ctx, c.c.ReloadAllowlist, &pb.ReloadAllowlistRequest{})
}

// ListOutbox lists the node's outbox.
func (c *Client) ListOutbox(ctx context.Context) (*pb.ListOutboxResponse, error) {
	return call(ctx, c.c.ListOutbox, &pb.ListOutboxRequest{})
}

// ListDeadLetters lists the node's dead letters.
func (c *Client) ListDeadLetters(ctx context.Context) (*pb.ListDeadLettersResponse, error) {
	return call(ctx, c.c.ListDeadLetters, &pb.ListDeadLettersRequest{})
}

// SubmitMembership hands the node a new membership version, the encoded
// document; a refusal is a RemoteError matching ErrInvalid (not a valid
// next version) or ErrUnsupported (the node runs no membership).
func (c *Client) SubmitMembership(ctx context.Context, doc []byte) (*pb.SubmitMembershipResponse, error) {
	return call(ctx, c.c.SubmitMembership, &pb.SubmitMembershipRequest{Document: doc})
}

// RetryDeadLetters starts the node's dead letters ids again.
func (c *Client) RetryDeadLetters(ctx context.Context, ids []uint64) (*pb.ExchangesResponse, error) {
	return call(ctx, c.c.RetryDeadLetters, &pb.ExchangesRequest{Ids: ids})
}

// DropDeadLetters makes the node forget its dead letters ids.
func (c *Client) DropDeadLetters(ctx context.Context, ids []uint64) (*pb.ExchangesResponse, error) {
	return call(ctx, c.c.DropDeadLetters, &pb.ExchangesRequest{Ids: ids})
}

// CancelOutbox ends the node's exchanges ids in progress.
func (c *Client) CancelOutbox(ctx context.Context, ids []uint64) (*pb.ExchangesResponse, error) {
	return call(ctx, c.c.CancelOutbox, &pb.ExchangesRequest{Ids: ids})
}

// call makes one unary call and turns a Connect error into a RemoteError
// that prints as the node's message alone.
func call[Req, Res any](ctx context.Context, f func(context.Context, *Req) (*Res, error), req *Req) (*Res, error) {
	res, err := f(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ce *connect.Error
		if errors.As(err, &ce) {
			return nil, &RemoteError{Code: ce.Code(), Msg: ce.Message()}
		}
		return nil, err
	}
	return res, nil
}

// SocketExists reports whether something is at path, for error messages
// that say where the CLI looked.
func SocketExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// Check asks the node how it reaches peer: directly and through each of its
// relays, with round trip times.
func (c *Client) Check(ctx context.Context, peer string) (*pb.CheckResponse, error) {
	return call(ctx, c.c.Check, &pb.CheckRequest{PeerId: peer})
}
