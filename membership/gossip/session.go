package gossip

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// The misbehaviour reasons charged: a frame that does not decode is a
// malformed message, a well-formed but invalid version a protocol
// violation. The Rejected event and the membership metric say more.
const (
	malformedCharge = ratelimit.MalformedMessage
	invalidCharge   = ratelimit.ProtocolViolation
)

// openSession opens a stream to p and runs a session on it.
func (s *Service) openSession(p peer.ID) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	// Members behind NAT are connected through a relay (p2p/relay.go).
	ctx = network.WithAllowLimitedConn(ctx, "members talk over relays too")
	st, err := s.cfg.Host.NewStream(ctx, p, ProtocolID)
	if err != nil {
		// Gone, or not speaking the protocol (a node on a YAML
		// allowlist): nothing to exchange.
		s.log.Debug("membership session not opened", zap.Stringer("peer", p), zap.Error(err))
		return
	}
	s.session(st)
}

// hold keeps the connections to p up until the returned release is called
// (Config.Hold).
func (s *Service) hold(p peer.ID) (release func()) {
	if s.cfg.Hold == nil {
		return func() {}
	}
	return s.cfg.Hold(p)
}

// handleStream runs a session a peer opened, if it is a member and has no
// other session of its own running; it charges a member for the second and
// later sessions it opens while one runs.
func (s *Service) handleStream(st network.Stream) {
	p := st.Conn().RemotePeer()
	member := s.isMember(p)
	s.sessMu.Lock()
	if s.closed {
		s.sessMu.Unlock()
		st.Reset()
		return
	}
	if running := s.inbound[p]; !member || running != nil {
		ev := Rejected{From: p, Reason: ReasonNotMember, Err: fmt.Errorf("gossip: session refused: %s is not a member of the current version", p)}
		if member {
			// One refusal per running session is free: an honest peer's
			// next session can arrive before this node has finished
			// with the last. More come only from a peer opening sessions
			// in parallel, which no honest one does.
			running.refused++
			ev.Reason, ev.Charged = ReasonBusy, running.refused > 1
			ev.Err = fmt.Errorf("gossip: session refused: %s already has one running (%d refused during it)", p, running.refused)
		}
		s.sessMu.Unlock()
		st.Reset()
		s.report(ev)
		return
	}
	s.inbound[p] = &inSession{}
	s.wg.Add(1)
	s.sessMu.Unlock()
	defer s.wg.Done()
	defer s.hold(p)()
	// The peer may open its next session as soon as it sees this one end:
	// the session is no longer running once its stream is closed or reset.
	rs := &releasingStream{Stream: st, release: func() {
		s.sessMu.Lock()
		delete(s.inbound, p)
		s.sessMu.Unlock()
		if s.cfg.inboundDone != nil {
			s.cfg.inboundDone(p)
		}
	}}
	defer rs.done()
	s.session(rs)
}

// releasingStream is a stream that calls release, once, when it is first
// closed or reset (or at done).
type releasingStream struct {
	network.Stream
	once    sync.Once
	release func()
}

func (r *releasingStream) done() { r.once.Do(r.release) }

func (r *releasingStream) Close() error {
	r.done()
	return r.Stream.Close()
}

func (r *releasingStream) Reset() error {
	r.done()
	return r.Stream.Reset()
}

// session runs the exchange on st, from either end: write our Hello, read
// the peer's; if we are ahead, write the versions it lacks (or, if it holds
// another document under a version we know, our document of that version);
// close our side; then read and apply the versions the peer writes until it
// closes its side.
func (s *Service) session(st network.Stream) {
	p := st.Conn().RemotePeer()
	stop := context.AfterFunc(s.ctx, func() { st.Reset() })
	defer stop()
	if err := st.SetDeadline(time.Now().Add(s.cfg.Timeout)); err != nil {
		st.Reset()
		return
	}
	tr := &transportReader{r: st}
	br := bufio.NewReader(tr)
	bw := bufio.NewWriter(st)

	cur := s.Current()
	err := writeHello(bw, cur.Version(), cur.Hash())
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		st.Reset()
		return
	}
	f, err := readFrame(br, tr)
	if err == nil && f.hello == nil {
		err = fmt.Errorf("%w: the first frame is not a hello", errFrame)
	}
	if err != nil {
		s.fail(st, p, err)
		return
	}
	theirs := *f.hello
	// Only at or below the version of our Hello: one applied since, from
	// another session, is one the peer may not know we hold, and it
	// answers the Hello we sent (PROTOCOL.md §10, step 3).
	if theirs.version <= cur.Version() {
		if ours, ok := s.docAt(theirs.version); ok && ours.Hash() != theirs.hash {
			// The Hello alone proves nothing: any member can write one.
			s.fork(st, bw, br, tr, p, theirs, ours)
			return
		}
	}
	s.serve(bw, p, theirs)
	if err := bw.Flush(); err != nil {
		st.Reset()
		return
	}
	// The member behind closes its side only once it has read, and
	// applied, what it was sent (at st.Close below): the member ahead,
	// which reads until then, so knows its versions arrived, and holds
	// the connection until they have (Config.Hold).
	if behind := theirs.version > cur.Version(); !behind {
		if err := st.CloseWrite(); err != nil {
			st.Reset()
			return
		}
	}

	applied := false
	last := cur.Version()
	for n := 0; ; n++ {
		f, err := readFrame(br, tr)
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil && f.doc == nil {
			err = fmt.Errorf("%w: a second hello", errFrame)
		}
		if err == nil && n >= maxDocsPerSession {
			err = fmt.Errorf("%w: more than %d documents in one session", errFrame, maxDocsPerSession)
		}
		if err != nil {
			s.fail(st, p, err)
			s.pushIf(applied, p)
			return
		}
		if n == 0 && theirs.version > cur.Version() {
			// The peer, ahead, holds another document of our version:
			// it sends its own, and only that (PROTOCOL.md §10, step 3).
			if v, _, err := peekDocument(f.doc); err == nil && v == cur.Version() {
				s.answerFork(st, bw, br, tr, p, cur, f.doc)
				return
			}
		}
		ok, end := s.receive(st, p, f.doc, &last)
		applied = applied || ok
		if end {
			s.pushIf(applied, p)
			return
		}
	}
	if now := s.Current().Version(); now < theirs.version {
		s.behind(p, theirs.version, now)
	}
	st.Close()
	s.pushIf(applied, p)
}

// receive handles one document a session brought: it reports whether the
// document was applied, and whether the session ended (st reset). last is
// the version of the previous document, or of our Hello.
func (s *Service) receive(st network.Stream, p peer.ID, data []byte, last *uint64) (applied, end bool) {
	// An honest peer sends the versions after the one in our Hello, oldest
	// first (serve): one at or below the last we were sent or announced is
	// out of order, and costs a token. Without it a member could make a
	// session skip hundreds of old documents for free.
	v, expires, err := peekDocument(data)
	if err == nil && v <= *last {
		err = fmt.Errorf("%w: version %d sent after version %d (versions must follow the hello's, oldest first)", errFrame, v, *last)
	}
	if err != nil {
		s.fail(st, p, err)
		return false, true
	}
	*last = v
	var rep membership.Report
	err = s.precheck(v, expires)
	if err == nil {
		var d *membership.Document
		if d, err = decodeDocument(data); err != nil {
			s.fail(st, p, err)
			return false, true
		}
		if rep, err = s.apply(d, p); err == nil {
			return true, false
		}
	}
	reason := classify(err)
	s.report(Rejected{From: p, Version: v, Reason: reason, Report: rep, Err: err})
	if reason != ReasonStale {
		st.Reset()
		return false, true
	}
	return false, false
}

// precheck refuses, from the version and expiry a document states, what
// apply would refuse without charging the sender: a version not newer than
// the current one, a gap, an expired version. Decoding a document parses
// every member's key (a thousand of them cost milliseconds): a member must
// not get that for free. What passes is decoded and verified in full.
func (s *Service) precheck(v uint64, expires int64) error {
	c := s.Current().Version()
	switch {
	case v <= c:
		return fmt.Errorf("gossip: version %d is not newer than the current version %d: %w, %w", v, c, membership.ErrStale, membership.ErrNotNext)
	case v != c+1:
		return fmt.Errorf("gossip: version %d does not follow the current version %d (versions in between are missing): %w", v, c, membership.ErrNotNext)
	case expires > 0 && !s.cfg.Now().Before(time.Unix(expires, 0)):
		return fmt.Errorf("gossip: version %d expired at %s: %w", v, time.Unix(expires, 0).UTC().Format(time.RFC3339), membership.ErrExpired)
	}
	return nil
}

// serve writes the versions a peer at theirs lacks, if we hold them all
// and they continue its history.
func (s *Service) serve(bw *bufio.Writer, p peer.ID, theirs hello) {
	if theirs.version >= s.Current().Version() {
		return
	}
	docs, ok := s.chainAfter(theirs.version, theirs.hash)
	if !ok {
		s.logPeer(zap.InfoLevel, p, "behind_history", "a member is behind by more versions than this node keeps", zap.Uint64("peer_version", theirs.version))
		return
	}
	for _, d := range docs {
		if err := writeDocument(bw, d); err != nil {
			return
		}
	}
}

// pushIf hands what was just applied to the other connected members.
func (s *Service) pushIf(applied bool, from peer.ID) {
	if applied {
		s.pushAll(from)
	}
}

// fail ends a session on a read error: the peer's fault for a bad frame,
// nobody's for a broken stream.
func (s *Service) fail(st network.Stream, p peer.ID, err error) {
	st.Reset()
	if errors.Is(err, errFrame) {
		s.report(Rejected{From: p, Reason: ReasonMalformed, Err: err})
		return
	}
	s.log.Debug("membership session broken", zap.Stringer("peer", p), zap.Error(err))
}

// classify maps an error of apply to the reason reported.
func classify(err error) Reason {
	switch {
	case errors.Is(err, ErrPersist):
		return ReasonLocal
	case errors.Is(err, membership.ErrStale):
		return ReasonStale
	case errors.Is(err, membership.ErrNotNext):
		return ReasonGap
	case errors.Is(err, membership.ErrBadLink):
		return ReasonBadLink
	case errors.Is(err, membership.ErrExpired):
		return ReasonExpired
	case errors.Is(err, membership.ErrThreshold):
		return ReasonThreshold
	default:
		return ReasonMalformed
	}
}
