package handler_test

import (
	"bufio"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	hpb "github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// Ack policy answers that are not reasons: never acknowledge, and
// acknowledge OK once the test sends on rawPeer.hold.
const (
	noAck   pb.Reason = -1
	holdAck pb.Reason = -2
)

// rawPeer is a bare go-libp2p host speaking the p2p message protocol and the
// handler's envelopes by hand, so that a test decides every ack and every
// message the handler sees: busy acks, silence, replies out of order,
// duplicates, protocol violations.
type rawPeer struct {
	t    testing.TB
	id   tu.Identity
	host host.Host
	got  chan *hpb.Envelope // every envelope received, before it is acked
	hold chan struct{}      // releases a holdAck

	mu     sync.Mutex
	policy func(env *hpb.Envelope, n int) pb.Reason // n counts envelopes received, from 1
	n      int
	out    network.Stream
	outBR  *bufio.Reader
	lastID uint64
}

func newRawPeer(t testing.TB, id tu.Identity, ip string) *rawPeer {
	r := &rawPeer{t: t, id: id, host: tu.RawHost(t, id.Key, ip), got: make(chan *hpb.Envelope, 64), hold: make(chan struct{})}
	r.host.SetStreamHandler(p2p.ProtocolID, r.serve)
	return r
}

func (r *rawPeer) addr() ma.Multiaddr { return r.host.Addrs()[0] }

// setPolicy decides the ack of each envelope received; nil acks OK.
func (r *rawPeer) setPolicy(f func(env *hpb.Envelope, n int) pb.Reason) {
	r.mu.Lock()
	r.policy = f
	r.mu.Unlock()
}

// serve reads Data frames from the handler and acks them as the policy says.
func (r *rawPeer) serve(s network.Stream) {
	br := bufio.NewReader(s)
	for {
		var f pb.Data
		if err := protodelim.UnmarshalFrom(br, &f); err != nil {
			s.Reset()
			return
		}
		env := new(hpb.Envelope)
		if err := proto.Unmarshal(f.Payload, env); err != nil {
			r.t.Errorf("raw peer: bad envelope: %v", err)
		}
		r.mu.Lock()
		r.n++
		reason := pb.Reason_OK
		if r.policy != nil {
			reason = r.policy(env, r.n)
		}
		r.mu.Unlock()
		r.got <- env
		switch reason {
		case noAck:
			continue
		case holdAck:
			select {
			case <-r.hold:
			case <-time.After(tu.Timeout):
				return
			}
			reason = pb.Reason_OK
		}
		if _, err := protodelim.MarshalTo(s, &pb.Ack{Id: f.Id, Reason: reason}); err != nil {
			return
		}
	}
}

// next waits for the next envelope the handler sent.
func (r *rawPeer) next() *hpb.Envelope {
	r.t.Helper()
	select {
	case env := <-r.got:
		return env
	case <-time.After(tu.Timeout):
		r.t.Fatalf("raw peer: nothing received within %s", tu.Timeout)
		return nil
	}
}

// send writes one envelope (or raw payload bytes) to h on the raw peer's
// own stream and returns the ack's reason. A stream the handler closed
// meanwhile (it disconnects after exchanges) is replaced and the frame
// resent, as a real dialer would.
func (r *rawPeer) send(h *handler.Handler, payload []byte) pb.Reason {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	for range 3 {
		var reason pb.Reason
		if reason, err = r.trySend(h, payload); err == nil {
			return reason
		}
		r.out.Reset()
		r.out = nil
	}
	r.t.Fatalf("raw peer: send: %v", err)
	return 0
}

func (r *rawPeer) trySend(h *handler.Handler, payload []byte) (pb.Reason, error) {
	if r.out == nil || r.out.Conn().IsClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
		defer cancel()
		if err := r.host.Connect(ctx, peer.AddrInfo{ID: h.PeerID(), Addrs: []ma.Multiaddr{addr(h)}}); err != nil {
			r.t.Fatalf("raw peer: connect: %v", err)
		}
		s, err := r.host.NewStream(ctx, h.PeerID(), p2p.ProtocolID)
		if err != nil {
			r.t.Fatalf("raw peer: stream: %v", err)
		}
		r.out, r.outBR, r.lastID = s, bufio.NewReader(s), 0
	}
	r.lastID++
	if _, err := protodelim.MarshalTo(r.out, &pb.Data{Id: r.lastID, Payload: payload}); err != nil {
		return 0, err
	}
	r.out.SetReadDeadline(time.Now().Add(tu.Timeout))
	var ack pb.Ack
	if err := protodelim.UnmarshalFrom(r.outBR, &ack); err != nil {
		return 0, err
	}
	return ack.Reason, nil
}

// envelope encodes a handler envelope.
func envelope(k hpb.Kind, id handler.ExchangeID, data []byte) []byte {
	b, err := proto.Marshal(&hpb.Envelope{Kind: k, Exchange: uint64(id), Payload: data})
	if err != nil {
		panic(err)
	}
	return b
}

// rawPair starts a handler and a raw peer that allowlist each other.
func rawPair(t testing.TB, opts ...handler.Option) (*handler.Handler, *rawPeer) {
	ih, ir := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ih, ir)
	return newHandler(t, ih, list, opts...), newRawPeer(t, ir, "127.0.0.1")
}

// sendFrame writes raw bytes on a fresh stream to h and returns the ack,
// or the error of a stream h cut (as it does a peer it rate limits).
func (r *rawPeer) sendFrame(h *handler.Handler, frame []byte) (pb.Reason, error) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	s, err := r.host.NewStream(ctx, h.PeerID(), p2p.ProtocolID)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if _, err := s.Write(frame); err != nil {
		return 0, err
	}
	s.SetReadDeadline(time.Now().Add(tu.Timeout))
	var ack pb.Ack
	if err := protodelim.UnmarshalFrom(bufio.NewReader(s), &ack); err != nil {
		return 0, err
	}
	return ack.Reason, nil
}

// post delivers one envelope to h without caring for the ack, which h may
// cut off along with a peer it judges faulty. fresh makes it use a new
// connection, for an h that may still be closing the last one.
func (r *rawPeer) post(h *handler.Handler, payload []byte, fresh bool) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if fresh && r.out != nil {
		r.out.Reset()
		r.out = nil
		r.host.Network().ClosePeer(h.PeerID())
	}
	r.trySend(h, payload)
}
