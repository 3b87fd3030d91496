package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb/pbconnect"
)

// Node is what a running node gives the control API. Each method may be
// called from many goroutines at once; ctx ends when the caller gives up
// or the server closes. An error wrapping ErrInvalid, ErrUnsupported or
// ErrStopping reaches the client with its text and a code saying which.
type Node interface {
	Status(ctx context.Context) (*pb.StatusResponse, error)
	Peers(ctx context.Context) (*pb.PeersResponse, error)
	Exchange(ctx context.Context, req *pb.ExchangeRequest) (*pb.ExchangeResponse, error)
	ReloadAllowlist(ctx context.Context) (*pb.ReloadAllowlistResponse, error)
	// ListOutbox and ListDeadLetters send the list in messages (see
	// pb.ListStoredResponse: data_dir first, then one exchange each) until
	// the list ends, ctx ends or send fails (the client went away), and
	// return then; the node never holds the whole list.
	ListOutbox(ctx context.Context, req *pb.ListStoredRequest, send func(*pb.ListStoredResponse) error) error
	ListDeadLetters(ctx context.Context, req *pb.ListStoredRequest, send func(*pb.ListStoredResponse) error) error
	SubmitMembership(ctx context.Context, req *pb.SubmitMembershipRequest) (*pb.SubmitMembershipResponse, error)
	RetryDeadLetters(ctx context.Context, req *pb.ExchangesRequest) (*pb.ExchangesResponse, error)
	DropDeadLetters(ctx context.Context, req *pb.ExchangesRequest) (*pb.ExchangesResponse, error)
	CancelOutbox(ctx context.Context, req *pb.ExchangesRequest) (*pb.ExchangesResponse, error)
	Check(ctx context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error)
}

// The errors a Node returns for the client to tell apart.
var (
	// ErrInvalid: the request is malformed (a bad peer ID, say).
	ErrInvalid = errors.New("invalid request")
	// ErrUnsupported: this node cannot do it (no store with --ephemeral,
	// no membership service without --membership).
	ErrUnsupported = errors.New("not supported by this node")
	// ErrStopping: the node is shutting down.
	ErrStopping = errors.New("node stopping")
)

// shutdownGrace bounds how long Close waits for calls in progress after
// cancelling them.
const shutdownGrace = 3 * time.Second

// DefaultMaxRequestSize bounds the body of a request (its encoded
// message) when Serve is not given WithMaxRequestSize: room for a
// membership document or a message of the default size, with their
// fields.
const DefaultMaxRequestSize = 4 << 20

// idleTimeout closes a connection that has carried its calls and then
// stays idle: a client that keeps it open for ever (one never closed in a
// long-running program) must not hold a file descriptor and a goroutine
// of the node for ever.
const idleTimeout = 2 * time.Minute

// ServeOption configures Serve.
type ServeOption func(*serveConfig)

// serveConfig is what the ServeOptions set.
type serveConfig struct {
	maxRequest int
	idle       time.Duration
	stall      time.Duration // ReaderStall
}

// ReaderStall is how long the node waits for a list's client to take the
// next message: a client that stops reading (its output piped to a pager
// left open) has its list cut off then, rather than hold a goroutine of
// the node and its page of records for as long as it lives.
const ReaderStall = 2 * time.Minute

// writeControllerKey is the request context's key for the call's
// http.ResponseController: the lists set a write deadline through it.
type writeControllerKey struct{}

// WithMaxRequestSize bounds the body of a request to n bytes: a larger one
// fails (Connect's resource_exhausted) after at most n+1 bytes were read,
// whatever it says its length is, and never reaches the Node. Give it room
// for the node's largest message: an Exchange carries one.
func WithMaxRequestSize(n int) ServeOption {
	return func(c *serveConfig) { c.maxRequest = n }
}

// Server serves the Control service of a Node on a unix socket.
type Server struct {
	path   string
	ln     *net.UnixListener
	srv    *http.Server
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Serve binds the socket at path (see Listen) and serves node on it until
// Close: Bind, then Socket.Serve. A request's body is bounded
// (DefaultMaxRequestSize, or WithMaxRequestSize), and a connection idle
// between calls is closed after a while: no client makes the node hold
// memory or descriptors without bound.
func Serve(path string, node Node, log *zap.Logger, opts ...ServeOption) (*Server, error) {
	s, err := Bind(path)
	if err != nil {
		return nil, err
	}
	return s.Serve(node, log, opts...)
}

// Socket is a control socket that Bind bound and nobody serves yet. It
// holds its path from the moment it is bound: another node's Bind or
// Serve on the path fails with ErrInUse, and a client's connection waits
// until Serve. Its owner serves it (Serve) or closes it (Close).
type Socket struct {
	path string
	ln   *net.UnixListener // nil once served or closed
}

// Bind binds the socket at path (see Listen) without serving it: a node
// binds its socket before it starts anything else, so that a second node
// given the same path is refused before it has done anything, rather than
// after it has resumed its own work.
func Bind(path string) (*Socket, error) {
	ln, err := Listen(path)
	if err != nil {
		return nil, err
	}
	return &Socket{path: path, ln: ln}, nil
}

// Path is the socket's path.
func (s *Socket) Path() string { return s.path }

// Close unbinds a socket that is not served: it closes the listener and
// removes the socket. It does nothing after Serve (the Server's Close
// does that) and may be called more than once.
func (s *Socket) Close() {
	if s.ln == nil {
		return
	}
	_ = s.ln.Close()
	s.ln = nil
	// Ours: Listen refuses to bind while another process serves it.
	_ = os.Remove(s.path)
}

// Serve serves node on s until the Server's Close, which then owns the
// socket (see Serve). It fails if s was served or closed already.
func (s *Socket) Serve(node Node, log *zap.Logger, opts ...ServeOption) (*Server, error) {
	if s.ln == nil {
		return nil, fmt.Errorf("control socket %s: served or closed already", s.path)
	}
	cfg := serveConfig{maxRequest: DefaultMaxRequestSize, idle: idleTimeout, stall: ReaderStall}
	for _, o := range opts {
		o(&cfg)
	}
	ln := s.ln
	s.ln = nil
	ctx, cancel := context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.Handle(pbconnect.NewControlHandler(&service{node: node, stall: cfg.stall}, connect.WithReadMaxBytes(cfg.maxRequest)))
	// net/http clears a write deadline set by a call once its response
	// is finished: the next call on the connection starts without one.
	withController := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), writeControllerKey{}, http.NewResponseController(w))
		mux.ServeHTTP(w, r.WithContext(ctx))
	})
	srv := &Server{
		path:   s.path,
		ln:     ln,
		cancel: cancel,
		done:   make(chan struct{}),
		srv: &http.Server{
			Handler:           withController,
			ReadHeaderTimeout: 10 * time.Second,
			// Not ReadTimeout: its deadline would end an Exchange
			// waiting for its reply, through the server's read that
			// watches for the client hanging up.
			IdleTimeout: cfg.idle,
			ErrorLog:    zap.NewStdLog(log),
			// Calls end when the server closes, an exchange's wait too.
			BaseContext: func(net.Listener) context.Context { return ctx },
		},
	}
	go func() {
		defer close(srv.done)
		if err := srv.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("control server stopped", zap.Error(err))
		}
	}()
	return srv, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Close cancels the calls in progress, stops serving, waits for the
// server's goroutine and removes the socket. It may be called more than
// once.
func (s *Server) Close() {
	s.once.Do(func() {
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
		}
		<-s.done
		// Ours: Listen refuses to start while another process serves it.
		_ = os.Remove(s.path)
	})
}

// service adapts a Node to the generated handler interface.
type service struct {
	node  Node
	stall time.Duration // ReaderStall
}

// sender is a list's send: each message must leave within the stall
// bound, or the send fails and the list ends (the client stopped reading).
func (s *service) sender(ctx context.Context, stream *connect.ServerStream[pb.ListStoredResponse]) func(*pb.ListStoredResponse) error {
	rc, _ := ctx.Value(writeControllerKey{}).(*http.ResponseController)
	return func(m *pb.ListStoredResponse) error {
		if rc != nil {
			_ = rc.SetWriteDeadline(time.Now().Add(s.stall))
		}
		if err := stream.Send(m); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("the client read nothing for %s: %w", s.stall, err)
			}
			return err
		}
		return nil
	}
}

func (s *service) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	r, err := s.node.Status(ctx)
	return r, connectErr(err)
}

func (s *service) Peers(ctx context.Context, _ *pb.PeersRequest) (*pb.PeersResponse, error) {
	r, err := s.node.Peers(ctx)
	return r, connectErr(err)
}

func (s *service) Exchange(ctx context.Context, req *pb.ExchangeRequest) (*pb.ExchangeResponse, error) {
	r, err := s.node.Exchange(ctx, req)
	return r, connectErr(err)
}

func (s *service) ReloadAllowlist(ctx context.Context, _ *pb.ReloadAllowlistRequest) (*pb.ReloadAllowlistResponse, error) {
	r, err := s.node.ReloadAllowlist(ctx)
	return r, connectErr(err)
}

func (s *service) StreamOutbox(ctx context.Context, req *pb.ListStoredRequest, stream *connect.ServerStream[pb.ListStoredResponse]) error {
	return connectErr(s.node.ListOutbox(ctx, req, s.sender(ctx, stream)))
}

func (s *service) StreamDeadLetters(ctx context.Context, req *pb.ListStoredRequest, stream *connect.ServerStream[pb.ListStoredResponse]) error {
	return connectErr(s.node.ListDeadLetters(ctx, req, s.sender(ctx, stream)))
}

func (s *service) SubmitMembership(ctx context.Context, req *pb.SubmitMembershipRequest) (*pb.SubmitMembershipResponse, error) {
	r, err := s.node.SubmitMembership(ctx, req)
	return r, connectErr(err)
}

func (s *service) RetryDeadLetters(ctx context.Context, req *pb.ExchangesRequest) (*pb.ExchangesResponse, error) {
	r, err := s.node.RetryDeadLetters(ctx, req)
	return r, connectErr(err)
}

func (s *service) DropDeadLetters(ctx context.Context, req *pb.ExchangesRequest) (*pb.ExchangesResponse, error) {
	r, err := s.node.DropDeadLetters(ctx, req)
	return r, connectErr(err)
}

func (s *service) CancelOutbox(ctx context.Context, req *pb.ExchangesRequest) (*pb.ExchangesResponse, error) {
	r, err := s.node.CancelOutbox(ctx, req)
	return r, connectErr(err)
}

// connectErr gives a Node's error the Connect code the client branches on.
func connectErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrInvalid):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, ErrUnsupported):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, ErrStopping):
		return connect.NewError(connect.CodeUnavailable, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	}
	return connect.NewError(connect.CodeUnknown, fmt.Errorf("%w", err))
}

func (s *service) Check(ctx context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error) {
	r, err := s.node.Check(ctx, req)
	return r, connectErr(err)
}
