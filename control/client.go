package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"syscall"
	"time"

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

// ConnectionError is a call that failed because the connection to the node
// broke before the node answered: the node stopped or was killed while it
// worked on the call, or closed the connection. The node said nothing, so
// it is not a RemoteError; what became of the call is not known (an
// Exchange may have been accepted, and a node with a store resumes it).
type ConnectionError struct {
	Path string // the control socket
	Err  error  // the transport's error (unexpected EOF, connection reset...)
}

// Error names the socket and the transport's error.
func (e *ConnectionError) Error() string {
	return fmt.Sprintf("the connection to the node (%s) broke before it answered: %v; the node may have stopped or died", e.Path, e.Err)
}

// Unwrap returns the transport's error.
func (e *ConnectionError) Unwrap() error { return e.Err }

// Client calls the Control service of the node at one socket.
type Client struct {
	path string
	hc   *http.Client
	c    pbconnect.ControlClient
	// readerStall is the server's ReaderStall, for the wording of a list
	// it cut off (tests shorten both).
	readerStall time.Duration
}

// DialOption configures Dial.
type DialOption func(*dialConfig)

type dialConfig struct {
	maxResponse int
}

// WithMaxResponseSize bounds each message the client reads from the node
// to n bytes: a larger one fails its call (Connect's resource_exhausted)
// without being read whole. Without it a message is not bounded (the node
// sends at most one exchange in one, and bounds exchanges itself).
func WithMaxResponseSize(n int) DialOption {
	return func(c *dialConfig) { c.maxResponse = n }
}

// Dial checks that a node serves the socket at path and returns a client
// for it. The error wraps ErrNoNode when none does.
func Dial(ctx context.Context, path string, opts ...DialOption) (*Client, error) {
	var cfg dialConfig
	for _, o := range opts {
		o(&cfg)
	}
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
	var copts []connect.ClientOption
	if cfg.maxResponse > 0 {
		copts = append(copts, connect.WithReadMaxBytes(cfg.maxResponse))
	}
	return &Client{path: path, hc: hc, c: pbconnect.NewControlClient(hc, "http://p2pnode", copts...), readerStall: ReaderStall}, nil
}

// Close closes the client's idle connections to the socket.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Path is the socket's path.
func (c *Client) Path() string { return c.path }

// Status asks the node for its status.
func (c *Client) Status(ctx context.Context) (*pb.StatusResponse, error) {
	return call(ctx, c, c.c.Status, &pb.StatusRequest{})
}

// Peers asks the node for its peers.
func (c *Client) Peers(ctx context.Context) (*pb.PeersResponse, error) {
	return call(ctx, c, c.c.Peers, &pb.PeersRequest{})
}

// Exchange runs one exchange through the node and waits for its outcome
// until ctx ends.
func (c *Client) Exchange(ctx context.Context, req *pb.ExchangeRequest) (*pb.ExchangeResponse, error) {
	return call(ctx, c, c.c.Exchange, req)
}

// ReloadAllowlist makes the node read its allowlist and routes files again.
func (c *Client) ReloadAllowlist(ctx context.Context) (*pb.ReloadAllowlistResponse, error) {
	return call(ctx, c, c.c.ReloadAllowlist, &pb.ReloadAllowlistRequest{})
}

// ListOutbox starts the listing of the node's outbox, oldest first, and
// returns once the node has sent its data directory; Next reads the
// exchanges one by one. With payloads each carries its whole payload,
// without only its start (see pb.ListStoredRequest). A list that makes
// progress is never cut short: idle (0: none) bounds the wait for each
// message, and a node silent for longer fails the list with ErrStalled.
// ctx bounds the whole list. The caller closes the list.
func (c *Client) ListOutbox(ctx context.Context, payloads bool, idle time.Duration) (*StoredList, error) {
	return c.listStored(ctx, c.c.StreamOutbox, &pb.ListStoredRequest{Payloads: payloads}, idle)
}

// ListDeadLetters lists the node's dead letters, by the time they failed,
// as ListOutbox lists the outbox.
func (c *Client) ListDeadLetters(ctx context.Context, payloads bool, idle time.Duration) (*StoredList, error) {
	return c.listStored(ctx, c.c.StreamDeadLetters, &pb.ListStoredRequest{Payloads: payloads}, idle)
}

// ErrStalled fails a list whose node sent nothing for the idle time the
// caller gave: it is busy or stuck, not gone.
var ErrStalled = errors.New("the node stopped sending")

// ErrReaderStalled fails a list that the node cut off because its caller
// took nothing for ReaderStall: the caller paused that long between two
// Next calls, and the messages in flight filled up.
var ErrReaderStalled = errors.New("the node cut the list off")

// StoredList is a list the node streams: ListOutbox or ListDeadLetters.
// It holds one exchange at a time.
type StoredList struct {
	// DataDir is the node's data directory, the list's first message.
	DataDir string

	c       *Client
	ctx     context.Context // the caller's
	cancel  context.CancelFunc
	stream  *connect.ServerStreamForClient[pb.ListStoredResponse]
	idle    time.Duration
	timer   *time.Timer // cancels the call when the node is silent for idle
	stalled atomic.Bool
	// last is when the previous receive returned, and paused the longest
	// the caller took from there to the next: the node cuts off a list
	// whose caller pauses for ReaderStall.
	last   time.Time
	paused time.Duration
}

func (c *Client) listStored(ctx context.Context,
	f func(context.Context, *pb.ListStoredRequest) (*connect.ServerStreamForClient[pb.ListStoredResponse], error),
	req *pb.ListStoredRequest, idle time.Duration) (*StoredList, error) {
	lctx, cancel := context.WithCancel(ctx)
	l := &StoredList{c: c, ctx: ctx, cancel: cancel, idle: idle}
	if idle > 0 {
		l.timer = time.AfterFunc(idle, func() {
			l.stalled.Store(true)
			cancel()
		})
	}
	stream, err := f(lctx, req)
	if err != nil {
		l.Close()
		return nil, l.err(err)
	}
	l.stream = stream
	first, err := l.receive()
	switch {
	case errors.Is(err, io.EOF):
		err = errors.New("the node ended the list without a word")
	case err == nil && first.Item != nil:
		err = errors.New("the node's list began with an exchange, not its data directory")
	}
	if err != nil {
		l.Close()
		return nil, err
	}
	l.DataDir = first.DataDir
	return l, nil
}

// Next returns the list's next exchange, io.EOF once the list is over, or
// why it failed: ErrStalled, a ConnectionError, a RemoteError, ctx's error.
func (l *StoredList) Next() (*pb.Stored, error) {
	m, err := l.receive()
	if err != nil {
		return nil, err
	}
	if m.Item == nil {
		return nil, errors.New("the node sent a list message without an exchange")
	}
	return m.Item, nil
}

func (l *StoredList) receive() (*pb.ListStoredResponse, error) {
	if !l.last.IsZero() {
		l.paused = max(l.paused, time.Since(l.last))
	}
	defer func() { l.last = time.Now() }()
	if l.timer != nil {
		l.timer.Reset(l.idle)
	}
	got := l.stream.Receive()
	if l.timer != nil {
		// Only the node's silence counts: the time the caller takes
		// between two Next calls (a slow reader of its output) does not.
		l.timer.Stop()
	}
	if got {
		return l.stream.Msg(), nil
	}
	if err := l.stream.Err(); err != nil {
		return nil, l.err(err)
	}
	return nil, io.EOF
}

func (l *StoredList) err(err error) error {
	if l.stalled.Load() {
		return fmt.Errorf("%w: it sent nothing for %s (control socket %s)", ErrStalled, l.idle, l.c.path)
	}
	err = l.c.callErr(l.ctx, err)
	var ce *ConnectionError
	if l.paused >= l.c.readerStall && errors.As(err, &ce) {
		return fmt.Errorf("%w: this program took nothing from it for %s, and the node waits %s for a list's reader (control socket %s: %w)",
			ErrReaderStalled, l.paused.Round(time.Second), l.c.readerStall, l.c.path, ce.Err)
	}
	return err
}

// Close ends the list: the node stops reading its store for it.
func (l *StoredList) Close() {
	if l.timer != nil {
		l.timer.Stop()
	}
	l.cancel()
	if l.stream != nil {
		_ = l.stream.Close()
	}
}

// SubmitMembership hands the node a new membership version, the encoded
// document; a refusal is a RemoteError matching ErrInvalid (not a valid
// next version) or ErrUnsupported (the node runs no membership).
func (c *Client) SubmitMembership(ctx context.Context, doc []byte) (*pb.SubmitMembershipResponse, error) {
	return call(ctx, c, c.c.SubmitMembership, &pb.SubmitMembershipRequest{Document: doc})
}

// RetryDeadLetters starts the node's dead letters ids again.
func (c *Client) RetryDeadLetters(ctx context.Context, ids []uint64) (*pb.ExchangesResponse, error) {
	return call(ctx, c, c.c.RetryDeadLetters, &pb.ExchangesRequest{Ids: ids})
}

// DropDeadLetters makes the node forget its dead letters ids.
func (c *Client) DropDeadLetters(ctx context.Context, ids []uint64) (*pb.ExchangesResponse, error) {
	return call(ctx, c, c.c.DropDeadLetters, &pb.ExchangesRequest{Ids: ids})
}

// CancelOutbox ends the node's exchanges ids in progress.
func (c *Client) CancelOutbox(ctx context.Context, ids []uint64) (*pb.ExchangesResponse, error) {
	return call(ctx, c, c.c.CancelOutbox, &pb.ExchangesRequest{Ids: ids})
}

// call makes one unary call and words its error (callErr).
func call[Req, Res any](ctx context.Context, c *Client, f func(context.Context, *Req) (*Res, error), req *Req) (*Res, error) {
	res, err := f(ctx, req)
	if err != nil {
		return nil, c.callErr(ctx, err)
	}
	return res, nil
}

// callErr turns the error of a call into what its caller branches on: ctx's
// own error once ctx has ended; a RemoteError, printing as the node's
// message alone, for an error the node sent; a ConnectionError for a
// connection that broke, which Connect reports as an error of its own
// (connect.IsWireError tells the two apart: a node killed mid-call must not
// read as a node that answered "unexpected EOF").
func (c *Client) callErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ce *connect.Error
	switch {
	case !errors.As(err, &ce):
		return err
	case connect.IsWireError(ce), ce.Code() == connect.CodeUnimplemented:
		// Unimplemented: an older node without the procedure (HTTP 404),
		// which Connect reports as its own error.
		return &RemoteError{Code: ce.Code(), Msg: ce.Message()}
	case ce.Code() == connect.CodeResourceExhausted:
		// The client's own bound on what it reads: the connection is fine.
		return err
	}
	return &ConnectionError{Path: c.path, Err: unwrapConnect(ce)}
}

// unwrapConnect is the transport's error inside a Connect error made by
// the client, without the wrappers that only repeat the socket and the
// call (Connect's code, the URL, the net.OpError): "unexpected EOF" or
// "read: connection reset by peer" is what the user can read.
func unwrapConnect(ce *connect.Error) error {
	err := ce.Unwrap()
	if err == nil {
		return ce
	}
	for {
		var ue *url.Error
		var oe *net.OpError
		switch {
		case errors.As(err, &ue) && ue.Err != nil:
			err = ue.Err
		case errors.As(err, &oe) && oe.Err != nil:
			err = oe.Err
		default:
			return err
		}
	}
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
	return call(ctx, c, c.c.Check, &pb.CheckRequest{PeerId: peer})
}
