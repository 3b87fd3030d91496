package handler_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

// Ack policy answers that are not reasons: never acknowledge, acknowledge
// OK (holdAck) or refuse unknown_exchange (holdUnknown) once the test sends
// on rawPeer.hold, and acknowledge with an id the handler's node never sent
// (a protocol violation).
const (
	noAck       pb.Reason = -1
	holdAck     pb.Reason = -2
	wrongID     pb.Reason = -3
	holdUnknown pb.Reason = -4
)

// rawPeer is a bare go-libp2p host speaking the p2p message protocol and the
// handler's envelopes by hand, so that a test decides every ack and every
// message the handler sees: busy acks, silence, replies out of order,
// duplicates, protocol violations.
//
// Every message stream, whichever end opened it, is a rawStream: the handler
// may send its Data on the raw peer's own stream as well as on one it opens,
// and the raw peer's Data is acked on the stream it was written on.
type rawPeer struct {
	t    testing.TB
	id   tu.Identity
	host host.Host
	got  chan *hpb.Envelope // every envelope received, before it is acked
	hold chan struct{}      // releases a holdAck or holdUnknown
	lazy sync.Map           // *hpb.Envelope received -> its Data frame's lazy_ack
	data sync.Map           // *hpb.Envelope received -> the *pb.Data that carried it

	mu     sync.Mutex
	policy func(env *hpb.Envelope, n int) pb.Reason // n counts envelopes received, from 1
	n      int

	sendMu sync.Mutex // the raw peer's own stream, for send and post
	out    *rawStream
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

// serve runs a stream the handler opened.
func (r *rawPeer) serve(s network.Stream) { r.attach(s).read() }

// rawStream is one message stream of the raw peer, read by one reader that
// dispatches the handler's Data frames (answered in order, as the policy
// says) and the acks of the raw peer's own Data frames.
type rawStream struct {
	r    *rawPeer
	s    network.Stream
	wmu  sync.Mutex    // one frame written at a time: Data by send, Acks by answer
	data chan *pb.Data // the handler's Data frames, in arrival order
	acks chan *pb.Ack  // acks of the raw peer's Data frames
	done chan struct{} // closed when the stream can no longer be read
	err  error         // why, set before done is closed

	wrote atomic.Int64 // Data frames (or raw frames) the raw peer wrote
	acked int64        // acks read; reader only
}

// attach starts answering the handler's Data frames on s; the caller runs
// read.
func (r *rawPeer) attach(s network.Stream) *rawStream {
	rs := &rawStream{r: r, s: s, data: make(chan *pb.Data, 1024), acks: make(chan *pb.Ack, 64), done: make(chan struct{})}
	go rs.answer()
	return rs
}

// read reads frames until the stream fails, then resets it.
func (rs *rawStream) read() {
	defer close(rs.data)
	br := bufio.NewReader(rs.s)
	for {
		var f pb.Frame
		if err := protodelim.UnmarshalFrom(br, &f); err != nil {
			rs.fail(err)
			return
		}
		switch {
		case f.GetData() != nil:
			rs.data <- f.GetData()
		case f.GetAck() != nil:
			if rs.acked++; rs.acked > rs.wrote.Load() {
				rs.r.t.Errorf("raw peer: ack %v of no data frame of ours", f.GetAck())
			}
			select {
			case rs.acks <- f.GetAck():
			default:
				rs.r.t.Errorf("raw peer: acks piling up unread")
			}
		default:
			rs.r.t.Errorf("raw peer: a frame with neither data nor ack")
			rs.fail(errors.New("malformed frame"))
			return
		}
	}
}

func (rs *rawStream) fail(err error) {
	rs.err = err
	close(rs.done)
	rs.s.Reset()
}

func (rs *rawStream) closed() bool {
	select {
	case <-rs.done:
		return true
	default:
		return false
	}
}

// write writes one frame, whole.
func (rs *rawStream) write(b []byte) error {
	rs.wmu.Lock()
	defer rs.wmu.Unlock()
	_, err := rs.s.Write(b)
	return err
}

// answer acks the handler's Data frames as the policy says, in order. It
// stops at a held ack that is never released; the frames after it are then
// neither delivered nor acked.
func (rs *rawStream) answer() {
	r := rs.r
	defer func() {
		for range rs.data {
		}
	}()
	for f := range rs.data {
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
		r.lazy.Store(env, f.LazyAck)
		r.data.Store(env, f)
		r.got <- env
		switch reason {
		case noAck:
			continue
		case wrongID:
			rs.write(frameBytes(pb.AckFrame(&pb.Ack{Id: f.Id + 1000})))
			continue
		case holdAck, holdUnknown:
			select {
			case <-r.hold:
			case <-rs.done:
				return
			case <-time.After(tu.Timeout):
				return
			}
			if reason == holdAck {
				reason = pb.Reason_OK
			} else {
				reason = pb.Reason_UNKNOWN_EXCHANGE
			}
		}
		if err := rs.write(frameBytes(pb.AckFrame(&pb.Ack{Id: f.Id, Reason: reason}))); err != nil {
			return
		}
	}
}

// send writes b, one frame carrying Data id (0: raw bytes, not necessarily
// a frame), and returns the reason of its ack, skipping acks of earlier
// frames whose sender stopped waiting.
func (rs *rawStream) send(id uint64, b []byte) (pb.Reason, error) {
	rs.wrote.Add(1)
	if err := rs.write(b); err != nil {
		return 0, err
	}
	timeout := time.NewTimer(tu.Timeout)
	defer timeout.Stop()
	for {
		var ack *pb.Ack
		select {
		case ack = <-rs.acks:
		case <-rs.done:
			select {
			case ack = <-rs.acks:
			default:
				return 0, rs.err
			}
		case <-timeout.C:
			return 0, fmt.Errorf("no ack within %s", tu.Timeout)
		}
		if id != 0 && ack.Id != 0 && ack.Id < id {
			continue
		}
		return ack.Reason, nil
	}
}

// frameBytes is f length-delimited, as on the wire.
func frameBytes(f *pb.Frame) []byte {
	var buf bytes.Buffer
	if _, err := protodelim.MarshalTo(&buf, f); err != nil {
		panic(err)
	}
	return buf.Bytes()
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
// resent on a new connection, as a real dialer would.
func (r *rawPeer) send(h *handler.Handler, payload []byte) pb.Reason {
	r.t.Helper()
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	var err error
	for range 3 {
		var reason pb.Reason
		if reason, err = r.trySend(h, payload); err == nil {
			return reason
		}
		if r.out != nil {
			r.out.s.Reset()
			r.out = nil
		}
		// The connection is one h is closing, most likely: h refuses
		// the streams opened on it and then closes it, and Connect
		// would hand it out again until that close reaches us, so
		// that every retry met it (the retries come at once, and on a
		// loaded machine the close takes longer than three of them).
		_ = r.host.Network().ClosePeer(h.PeerID())
	}
	r.t.Fatalf("raw peer: send: %v", err)
	return 0
}

func (r *rawPeer) trySend(h *handler.Handler, payload []byte) (pb.Reason, error) {
	return r.trySendOn(h, 0, payload)
}

// trySendOn is trySend to p2p channel ch. The caller holds sendMu.
func (r *rawPeer) trySendOn(h *handler.Handler, ch uint32, payload []byte) (pb.Reason, error) {
	if r.out == nil || r.out.closed() || r.out.s.Conn().IsClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
		defer cancel()
		if err := r.host.Connect(ctx, peer.AddrInfo{ID: h.PeerID(), Addrs: []ma.Multiaddr{addr(h)}}); err != nil {
			r.t.Fatalf("raw peer: connect: %v", err)
		}
		s, err := r.host.NewStream(ctx, h.PeerID(), p2p.ProtocolID)
		if err != nil {
			// The connection may be one h is closing (it disconnects
			// after exchanges): send dials again, as a real dialer
			// would, on a new connection: Connect would return this
			// one again until its close reaches us.
			_ = r.host.Network().ClosePeer(h.PeerID())
			return 0, fmt.Errorf("raw peer: stream: %w", err)
		}
		r.out, r.lastID = r.attach(s), 0
		go r.out.read()
	}
	r.lastID++
	return r.out.send(r.lastID, frameBytes(pb.DataFrame(&pb.Data{Id: r.lastID, Channel: ch, Payload: payload})))
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
// or the error of a stream h cut (as it does a peer it rate limits). The
// handler's own Data on that stream, if any, is answered as on any other.
func (r *rawPeer) sendFrame(h *handler.Handler, frame []byte) (pb.Reason, error) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	s, err := r.host.NewStream(ctx, h.PeerID(), p2p.ProtocolID)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	rs := r.attach(s)
	go rs.read()
	return rs.send(0, frame)
}

// post delivers one envelope to h without caring for the ack, which h may
// cut off along with a peer it judges faulty. fresh makes it use a new
// connection, for an h that may still be closing the last one.
func (r *rawPeer) post(h *handler.Handler, payload []byte, fresh bool) {
	r.t.Helper()
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	if fresh && r.out != nil {
		r.out.s.Reset()
		r.out = nil
		r.host.Network().ClosePeer(h.PeerID())
	}
	r.trySend(h, payload)
}
