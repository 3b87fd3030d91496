package gossip

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// Fork exchanges (PROTOCOL.md §10, Forks). A Hello is not signed: any member
// can name another document of a version this node holds. So a session
// whose Hello does turns into an exchange of the two documents, and a fork
// is reported only once the peer's document verifies against the version
// before it; a claim the peer does not show is charged, and one exchange
// runs per peer and version within claimWindow. The ordinary course of a
// session is in session.go; what the service remembers of the forks and
// exchanges, in alarms.go.

// fork runs the rest of a session whose peer's Hello named a version we
// hold, ours, with another hash: we send ours, and the peer must send the
// document its Hello named, which must verify against the version before
// it. Only then is it a fork; a claim it does not back up is charged.
func (s *Service) fork(st network.Stream, bw *bufio.Writer, br *bufio.Reader, tr *transportReader, p peer.ID, theirs hello, ours *membership.Document) {
	if !s.newClaim(st, br, tr, p, theirs.version, theirs.hash, true) {
		return
	}
	// However it ends, from here the peer had our document (or could
	// have): not again within claimWindow.
	rs := s.remembering(st, p, theirs.version, theirs.hash)
	defer rs.done()
	st = rs
	err := writeDocument(bw, ours)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		// Our version is at or above the peer's: we are not behind.
		err = st.CloseWrite()
	}
	if err != nil {
		st.Reset()
		return
	}
	f, err := readFrame(br, tr)
	if err == nil && f.doc == nil {
		err = fmt.Errorf("%w: a second hello", errFrame)
	}
	if errors.Is(err, errFrame) {
		s.fail(st, p, err)
		return
	}
	if err != nil {
		st.Reset()
		if s.ctx.Err() != nil {
			return // we are the ones stopping
		}
		if errors.Is(err, io.EOF) {
			// The peer ended its side cleanly without the document. Any
			// member can send a Hello; a fork needs both documents, so
			// the claim costs a token.
			s.report(Rejected{From: p, Version: theirs.version, Reason: ReasonUnproven,
				Err: fmt.Errorf("gossip: %s named another document of version %d (%s) and did not send it: %w", p, theirs.version, theirs.hash, err)})
			return
		}
		// Cut short (a reset, the connection closed, the deadline): an
		// honest member's document is lost that way when either end's
		// handler closes the connection with bytes unread (a TCP reset).
		// Not charged, not a fork: the exchange runs again once
		// claimWindow is over.
		s.report(Rejected{From: p, Version: theirs.version, Reason: ReasonForkUnchecked,
			Err: fmt.Errorf("gossip: %s named another document of version %d (%s) and the session ended before it came (%w): not checked", p, theirs.version, theirs.hash, err)})
		return
	}
	d, ok := s.checkForkDocument(st, p, theirs.version, f.doc, ours, &theirs.hash)
	if !ok {
		return
	}
	// The peer closes its side after its document.
	if !s.forkEnds(st, br, tr, p) {
		return
	}
	// Reported before the close, so that a peer that saw the end of the
	// session knows its outcome was dealt with.
	if d != nil {
		s.proven(p, ours, d)
	}
	st.Close()
}

// forkEnds reads the end of the peer's side after the document of a fork,
// failing the session on anything else: the fork's exchange is one
// document each way.
func (s *Service) forkEnds(st network.Stream, br *bufio.Reader, tr *transportReader, p peer.ID) bool {
	if _, err := readFrame(br, tr); !errors.Is(err, io.EOF) {
		if err == nil {
			err = fmt.Errorf("%w: a frame after the document of a fork", errFrame)
		}
		s.fail(st, p, err)
		return false
	}
	return true
}

// answerFork runs the rest of a session in which the peer, ahead, sent a
// document of our version, cur: another one, which must verify against the
// version before it (our own sent back is out of order); then we send cur,
// so the peer sees the fork too.
func (s *Service) answerFork(st network.Stream, bw *bufio.Writer, br *bufio.Reader, tr *transportReader, p peer.ID, cur *membership.Document, data []byte) {
	h, err := peekHash(data)
	if err != nil {
		s.fail(st, p, err)
		return
	}
	// Our own document sent back is refused below, as out of order.
	if h != cur.Hash() {
		if !s.newClaim(st, br, tr, p, cur.Version(), h, false) {
			return
		}
		rs := s.remembering(st, p, cur.Version(), h)
		defer rs.done()
		st = rs
	}
	d, ok := s.checkForkDocument(st, p, cur.Version(), data, cur, nil)
	if !ok {
		return
	}
	if !s.forkEnds(st, br, tr, p) {
		return
	}
	if d != nil {
		s.proven(p, cur, d)
	}
	err = writeDocument(bw, cur)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		st.Reset()
		return
	}
	st.Close()
}

// remembering is st that, as our side of a fork exchange with p for
// version v ends, remembers it (at its close or reset, or at done):
// before the stream ends, so that a peer that saw the session end finds
// it remembered, counted from then.
func (s *Service) remembering(st network.Stream, p peer.ID, v uint64, hash membership.Hash) *releasingStream {
	return &releasingStream{Stream: st, release: func() { s.remember(p, v, hash) }}
}

// newClaim reports whether a fork exchange with p for version v, where p
// names hash, is to run: the first one within claimWindow. Otherwise it
// ends the session without sending our document: the exchange already ran
// (the outcome was dealt with then; a proven fork is reported once anyway),
// and a member naming another document each time would otherwise have our
// document, up to 1 MiB, sent for a Hello of a few bytes, session after
// session. The same hash again is what an honest peer names every session
// (it holds one document of v), and is not charged; the peer may send its
// document once more (it forgot the exchange: restarted), which is read
// and not decoded. Another hash is a second document of one version, which
// no honest member holds: charged. first says whether the peer's document
// is still to come (its Hello named v); otherwise it was read already.
func (s *Service) newClaim(st network.Stream, br *bufio.Reader, tr *transportReader, p peer.ID, v uint64, hash membership.Hash, first bool) bool {
	kind, was := s.claim(p, v, hash)
	switch kind {
	case claimNew:
		return true
	case claimOther:
		st.Reset()
		s.report(Rejected{From: p, Version: v, Reason: ReasonUnproven,
			Err: fmt.Errorf("gossip: %s names another document of version %d (%s) than in a fork exchange %s ago (%s)",
				p, v, hash, s.clock().Sub(was.at).Round(time.Second), was.hash)})
		return false
	}
	s.log.Debug("membership fork named again: no document sent", zap.Stringer("peer", p), zap.Uint64("version", v), zap.Stringer("peer_hash", hash))
	if first {
		if err := st.CloseWrite(); err != nil {
			st.Reset()
			return false
		}
	}
	for n := 0; ; n++ {
		f, err := readFrame(br, tr)
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil && (f.doc == nil || !first || n > 0) {
			err = fmt.Errorf("%w: a frame after the document of a fork", errFrame)
		}
		if err == nil {
			var h membership.Hash
			if h, err = peekHash(f.doc); err == nil && h != hash {
				err = fmt.Errorf("%w: the document of version %d sent is %s, not %s as the hello said", errFrame, v, h, hash)
			}
		}
		if err != nil {
			s.fail(st, p, err)
			return false
		}
	}
	st.Close()
	return false
}

// checkForkDocument checks data, which the peer sent as its document of
// version v where we hold ours: it must be version v, decode, be another
// than ours (and the one named by want, if set: the peer's Hello), and
// verify against our version v-1 as VerifyNext does (expiry aside: a document
// signed twice is a fork even once expired). A document that fails is
// refused and charged, the session reset: ok is false then. When we do not
// keep version v-1 (v is the genesis, or older than our history), or the
// document links to another v-1 than ours (the histories split earlier),
// it cannot be checked: it is reported as ReasonForkUnchecked (an event, a
// metric, a warn line), neither a fork nor charged, and the session goes
// on (ok, d nil).
func (s *Service) checkForkDocument(st network.Stream, p peer.ID, v uint64, data []byte, ours *membership.Document, want *membership.Hash) (*membership.Document, bool) {
	got, _, err := peekDocument(data)
	if err == nil && got != v {
		err = fmt.Errorf("%w: version %d sent for a fork at version %d", errFrame, got, v)
	}
	var d *membership.Document
	if err == nil {
		d, err = decodeDocument(data)
	}
	if err == nil && d.Hash() == ours.Hash() {
		err = fmt.Errorf("%w: this node's own version %d sent back to it (out of order)", errFrame, v)
	}
	if err == nil && want != nil && d.Hash() != *want {
		err = fmt.Errorf("%w: the document of version %d sent is %s, not %s as the hello said", errFrame, v, d.Hash(), *want)
	}
	if err != nil {
		s.fail(st, p, err)
		return nil, false
	}
	prev, ok := s.docAt(v - 1)
	if v == 0 || !ok {
		s.report(Rejected{From: p, Version: v, Reason: ReasonForkUnchecked,
			Err: fmt.Errorf("gossip: %s holds another document of version %d (%s, this node's %s), and this node does not keep version %d to check it", p, v, d.Hash(), ours.Hash(), v-1)})
		return nil, true
	}
	// time.Time{}: before any expiry.
	rep, err := s.cfg.verify(prev, d, time.Time{})
	if errors.Is(err, membership.ErrBadLink) {
		// What an honest peer sends when the histories split before
		// version v: its version v follows its own v-1. Not shown, but no
		// fault either.
		s.report(Rejected{From: p, Version: v, Reason: ReasonForkUnchecked,
			Err: fmt.Errorf("gossip: %s holds another document of version %d (%s, this node's %s) following another version %d (%s, this node's %s): the histories split earlier",
				p, v, d.Hash(), ours.Hash(), v-1, d.Body().Prev, prev.Hash())})
		return nil, true
	}
	if err != nil {
		st.Reset()
		s.report(Rejected{From: p, Version: v, Reason: classify(err), Report: rep,
			Err: fmt.Errorf("gossip: another document of version %d: %w", v, err)})
		return nil, false
	}
	return d, true
}
