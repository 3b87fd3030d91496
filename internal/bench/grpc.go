package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
)

// grpcEchoMethod is the one method of the gRPC baseline's service.
const grpcEchoMethod = "/bitvmx.bench.Echo/Echo"

// GRPCPair is a gRPC server on 127.0.0.1 and the client credentials to
// call it, both over mutual TLS 1.3: each side has a self-signed
// certificate made in memory and trusts only the other's. The certificates
// are ed25519 and the key exchange X25519, what the handler's Noise
// handshake uses in these workloads, so that a ratio compares the
// protocols and not the curves. The one method, Echo, answers a BytesValue
// with itself.
type GRPCPair struct {
	Addr   string
	client credentials.TransportCredentials
	srv    *grpc.Server
	served chan error // Serve's result, once it returns
}

// NewGRPCPair makes the certificates and starts the server.
func NewGRPCPair() (*GRPCPair, error) {
	serverCert, serverPool, err := selfSigned("bench-grpc-server")
	if err != nil {
		return nil, err
	}
	clientCert, clientPool, err := selfSigned("bench-grpc-client")
	if err != nil {
		return nil, err
	}
	curves := []tls.CurveID{tls.X25519}
	serverTLS := &tls.Config{
		MinVersion: tls.VersionTLS13, CurvePreferences: curves,
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: clientPool,
	}
	clientTLS := &tls.Config{
		MinVersion: tls.VersionTLS13, CurvePreferences: curves,
		Certificates: []tls.Certificate{clientCert},
		RootCAs:      serverPool, ServerName: "127.0.0.1",
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)))
	srv.RegisterService(echoServiceDesc(), nil)
	p := &GRPCPair{Addr: lis.Addr().String(), client: credentials.NewTLS(clientTLS), srv: srv, served: make(chan error, 1)}
	go func() { p.served <- srv.Serve(lis) }()
	return p, nil
}

// Close stops the server and waits for it.
func (p *GRPCPair) Close() {
	p.srv.Stop()
	<-p.served
}

// Dial makes a client of the server. gRPC connects lazily: the first call
// dials and handshakes.
func (p *GRPCPair) Dial() (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+p.Addr, grpc.WithTransportCredentials(p.client))
}

// echoServiceDesc describes the Echo service by hand, as protoc-gen-go-grpc
// would from a one-method .proto: BytesValue in, BytesValue out.
func echoServiceDesc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "bitvmx.bench.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Echo",
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := new(wrapperspb.BytesValue)
				if err := dec(in); err != nil {
					return nil, err
				}
				return in, nil
			},
		}},
	}
}

// echoCall makes one unary Echo call of msg on cc and checks the answer.
func echoCall(ctx context.Context, cc *grpc.ClientConn, msg []byte) error {
	out := new(wrapperspb.BytesValue)
	if err := cc.Invoke(ctx, grpcEchoMethod, wrapperspb.Bytes(msg), out); err != nil {
		return err
	}
	if len(out.Value) != len(msg) {
		return fmt.Errorf("echo answered %d bytes, want %d", len(out.Value), len(msg))
	}
	return nil
}

// GRPCCalls times n unary calls of size bytes on cc with up to inFlight
// outstanding, made by inFlight goroutines.
func GRPCCalls(ctx context.Context, cc *grpc.ClientConn, n, size, inFlight int) (time.Duration, error) {
	msg := make([]byte, size)
	var issued atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, inFlight)
	start := time.Now()
	for i := range inFlight {
		wg.Go(func() {
			for issued.Add(1) <= int64(n) {
				if err := echoCall(ctx, cc, msg); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// NewConnCalls times n unary calls of size bytes, each on a client of its
// own: dial, TLS handshake, HTTP/2 set-up, the call, close.
func (p *GRPCPair) NewConnCalls(ctx context.Context, n, size int) (time.Duration, error) {
	msg := make([]byte, size)
	start := time.Now()
	for range n {
		cc, err := p.Dial()
		if err != nil {
			return 0, err
		}
		err = echoCall(ctx, cc, msg)
		if cerr := cc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// selfSigned makes an ed25519 certificate for 127.0.0.1 that signs itself,
// and a pool that trusts it alone.
func selfSigned(name string) (tls.Certificate, *x509.CertPool, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: cert}, pool, nil
}

// GRPCKeptConn is exchanges over a connection both handlers keep, with
// inFlight outstanding, against unary gRPC calls on one kept client
// connection with as many outstanding.
func GRPCKeptConn(ctx context.Context, size, inFlight int) (*Workload, error) {
	hp, err := newHandlerPair(func(c *handler.Config) {
		c.KeepConnection = true
		c.MaxConcurrentPerPeer = inFlight
	}, inFlight)
	if err != nil {
		return nil, err
	}
	gp, err := NewGRPCPair()
	if err != nil {
		hp.Close()
		return nil, err
	}
	cc, err := gp.Dial()
	if err != nil {
		hp.Close()
		gp.Close()
		return nil, err
	}
	w := &Workload{
		Ours: func(k int) (time.Duration, error) {
			if inFlight == 1 {
				return hp.Exchanges(ctx, k, size)
			}
			return hp.Window(ctx, k, size, inFlight)
		},
		Base:  func(k int) (time.Duration, error) { return GRPCCalls(ctx, cc, k, size, inFlight) },
		Close: func() { hp.Close(); cc.Close(); gp.Close() },
	}
	return warm(w, inFlight)
}

// GRPCNewConn is exchanges that each dial and close their own connection
// (the handler's default), against unary gRPC calls that each dial,
// handshake and close a client connection of their own.
func GRPCNewConn(ctx context.Context, size int) (*Workload, error) {
	hp, err := NewHandlerPair(nil)
	if err != nil {
		return nil, err
	}
	gp, err := NewGRPCPair()
	if err != nil {
		hp.Close()
		return nil, err
	}
	w := &Workload{
		Ours:  func(k int) (time.Duration, error) { return hp.Exchanges(ctx, k, size) },
		Base:  func(k int) (time.Duration, error) { return gp.NewConnCalls(ctx, k, size) },
		Close: func() { hp.Close(); gp.Close() },
	}
	return warm(w, 1)
}

// GRPCBareKeptConn is GRPCKeptConn's reference: bare go-libp2p echo round
// trips on a kept connection (inFlight streams, one round trip outstanding
// on each) in place of the handler's exchanges, against the same gRPC
// calls. Its ratio is the most GRPCKeptConn's can reach: the handler's
// exchange costs at least a round trip on go-libp2p.
func GRPCBareKeptConn(ctx context.Context, size, inFlight int) (*Workload, error) {
	bp, err := NewBarePair()
	if err != nil {
		return nil, err
	}
	streams := make([]*EchoStream, inFlight)
	for i := range streams {
		if streams[i], err = bp.Stream(ctx); err != nil {
			bp.Close()
			return nil, err
		}
	}
	gp, err := NewGRPCPair()
	if err != nil {
		bp.Close()
		return nil, err
	}
	cc, err := gp.Dial()
	if err != nil {
		bp.Close()
		gp.Close()
		return nil, err
	}
	w := &Workload{
		Ours:  func(k int) (time.Duration, error) { return RoundTripsOn(streams, k, size) },
		Base:  func(k int) (time.Duration, error) { return GRPCCalls(ctx, cc, k, size, inFlight) },
		Close: func() { bp.Close(); cc.Close(); gp.Close() },
	}
	return warm(w, inFlight)
}

// GRPCBareNewConn is GRPCNewConn's reference: bare go-libp2p connect, echo,
// close in place of the handler's dialed exchange, against the same gRPC
// calls on connections of their own. Its ratio is what go-libp2p's
// connection set-up (Noise XX, yamux, identify) allows against TLS 1.3's.
func GRPCBareNewConn(ctx context.Context, size int) (*Workload, error) {
	bp, err := NewBarePair()
	if err != nil {
		return nil, err
	}
	gp, err := NewGRPCPair()
	if err != nil {
		bp.Close()
		return nil, err
	}
	w := &Workload{
		Ours:  func(k int) (time.Duration, error) { return bp.NewConnExchanges(ctx, k, size) },
		Base:  func(k int) (time.Duration, error) { return gp.NewConnCalls(ctx, k, size) },
		Close: func() { bp.Close(); gp.Close() },
	}
	return warm(w, 1)
}

// warm runs n operations of each side of w, untimed, so that connections
// kept for the timed work are up and one-time set-up is done; on failure
// it closes w.
func warm(w *Workload, n int) (*Workload, error) {
	if _, err := w.Ours(n); err != nil {
		w.Close()
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	if _, err := w.Base(n); err != nil {
		w.Close()
		return nil, fmt.Errorf("warm-up of the baseline: %w", err)
	}
	return w, nil
}
