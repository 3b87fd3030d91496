package handler

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
)

// pending is the set of received requests that await the application's
// Response. It lets Response answer "unknown" or "already responded" at once
// without a round trip to the loop, a round trip that cost a responder a
// quarter of its exchange rate. The loop adds a request when it delivers it
// and removes it when the exchange ends; Response claims it. It is the one
// piece of state the loop shares, and it holds no FSM state: only whether
// the application may still answer.
type pending struct {
	// unclaimed counts the pending requests no Response has claimed yet:
	// each is in the application's hands, or on its way there, and an
	// answer to it may follow (endCall). Read without mu.
	unclaimed atomic.Int64

	mu sync.Mutex
	// m holds each pending request's exchange, whose claim field (how far
	// Response has gone) mu guards: Response finds the exchange here,
	// and the handler's maps need not be searched for it again.
	m map[pendingKey]*exchange
	// answered remembers the last answeredCap exchanges that ended after
	// Response claimed them (their IDs, and their peers at the same
	// index), so that a second Response still says "already responded"
	// once the first answer's exchange has ended, rather than the
	// misleading "unknown exchange". It is a ring, oldest at next,
	// searched only by a Response whose request is no longer pending
	// (notPending), an error: a scan of the IDs there (a few µs,
	// BenchmarkAnsweredMiss) rather than a table kept at every answered
	// request's end, where each insert and eviction in a table that size
	// was likely a cache miss.
	answered      []ExchangeID
	answeredPeers []peer.ID
	next          int
	// closed holds the requests that Close ended unanswered, so that a
	// Response racing it says ErrClosed rather than "unknown exchange".
	// It only grows while the handler closes, by the requests it held.
	closed map[pendingKey]bool // true: with a store, delivered again at the next start
	// held holds the requests that Close ended while Response was
	// recording their reply (recording): their one end waits for the
	// store's answer (recorded). Each is its exchange's Outcome, which end
	// fills in under the handler's mu.
	held map[pendingKey]*Outcome
	// recordings counts the Responses between claim and doneRecording;
	// idle is signalled when it drops to 0 (waitRecordings).
	recordings int
	idle       *sync.Cond
}

// claimState is how far Response has gone with a pending request.
type claimState uint8

const (
	unclaimed claimState = iota
	// recording: claimed by Response, which is recording the reply in
	// the store before it sends it. Whether it is answered depends on the
	// store's answer: an end meanwhile by Close waits for it (held).
	recording
	claimed
)

// answeredCap bounds pending.answered: a second Response comes moments
// after the first, and 4096 keys are 96 KiB.
const answeredCap = 4096

type pendingKey struct {
	peer peer.ID
	id   ExchangeID
}

// add makes responder exchange ex's request pending.
func (s *pending) add(ex *exchange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[pendingKey]*exchange)
	}
	ex.claim = unclaimed
	s.m[pendingKey{ex.p.id, ex.id}] = ex
	s.unclaimed.Add(1)
}

// remove ends the request's wait for an answer and reports whether
// Response had claimed it: from here a Response fails, so an unclaimed
// request is never answered in this life. hold, when not nil, is the
// Outcome of an end that depends on whether the reply is on disk (Close,
// with a store): if Response is still recording the reply, that end is
// held until the store answers (recorded), and remove reports it held.
func (s *pending) remove(p peer.ID, id ExchangeID, hold *Outcome) (wasClaimed, held bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := pendingKey{p, id}
	st := unclaimed
	if ex := s.m[k]; ex != nil {
		st = ex.claim
		delete(s.m, k)
		if st == unclaimed {
			s.unclaimed.Add(-1)
		}
	}
	switch {
	case st == recording && hold != nil:
		if s.held == nil {
			s.held = make(map[pendingKey]*Outcome)
		}
		s.held[k] = hold
		return true, true
	case st != unclaimed:
		s.rememberAnswered(k)
		return true, false
	}
	return false, false
}

// recorded tells the store's answer about the reply Response was
// recording (err: not recorded). A request still pending is claimed for
// good, or, not recorded, given back to the application. For a request
// whose end was held (remove), it returns that end's Outcome: the reply
// on disk, the request was answered, and the Outcome is due; not on disk,
// it was not: it stays pending in the store, and the next start delivers
// it again (a later Response says so).
func (s *pending) recorded(p peer.ID, id ExchangeID, err error) (o *Outcome, held bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := pendingKey{p, id}
	if ex := s.m[k]; ex != nil {
		if ex.claim == recording {
			ex.claim = claimed
			if err != nil {
				ex.claim = unclaimed
				s.unclaimed.Add(1)
			}
		}
		return nil, false
	}
	if o, held = s.held[k]; !held {
		return nil, false
	}
	delete(s.held, k)
	if err == nil {
		s.rememberAnswered(k)
	} else {
		if s.closed == nil {
			s.closed = make(map[pendingKey]bool)
		}
		s.closed[k] = true
	}
	return o, true
}

// doneRecording ends what claim(record) began, once the store's answer
// has been acted on.
func (s *pending) doneRecording() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordings--
	if s.recordings == 0 && s.idle != nil {
		s.idle.Broadcast()
	}
}

// waitRecordings returns once no Response is recording a reply: Close
// waits for it before it closes the application's channels, so that the
// Outcome of an end held for the store's answer is handed out.
func (s *pending) waitRecordings() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.recordings > 0 {
		if s.idle == nil {
			s.idle = sync.NewCond(&s.mu)
		}
		s.idle.Wait()
	}
}

func (s *pending) rememberAnswered(k pendingKey) {
	if len(s.answered) < answeredCap {
		s.answered = append(s.answered, k.id)
		s.answeredPeers = append(s.answeredPeers, k.peer)
		return
	}
	s.answered[s.next], s.answeredPeers[s.next] = k.id, k.peer
	s.next = (s.next + 1) % answeredCap
}

// wasAnswered reports whether k is remembered answered (rememberAnswered).
func (s *pending) wasAnswered(k pendingKey) bool {
	for i, id := range s.answered {
		if id == k.id && s.answeredPeers[i] == k.peer {
			return true
		}
	}
	return false
}

// closedUnanswered records that Close ended the request unanswered;
// again: with a store, it is delivered again at the next start.
func (s *pending) closedUnanswered(p peer.ID, id ExchangeID, again bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed == nil {
		s.closed = make(map[pendingKey]bool)
	}
	s.closed[pendingKey{p, id}] = again
}

// claim reserves the right to answer the request, once, and returns its
// exchange, which the caller reads under the handler's mu only (respond):
// it may end meanwhile. record: the reply is to be recorded in the store
// first, and the caller calls recorded and then doneRecording.
func (s *pending) claim(p peer.ID, id ExchangeID, record bool) (*exchange, error) {
	k := pendingKey{p, id}
	s.mu.Lock()
	defer s.mu.Unlock()
	ex := s.m[k]
	switch {
	case ex == nil:
		// Only a request no longer pending is looked for among the
		// closed and the answered: the common Response costs one lookup.
		return nil, s.notPending(k)
	case ex.claim != unclaimed:
		return nil, fmt.Errorf("%w: %s from %s", ErrAlreadyResponded, id, p)
	}
	s.unclaimed.Add(-1)
	if record {
		ex.claim = recording
		s.recordings++
		return ex, nil
	}
	ex.claim = claimed
	return ex, nil
}

// notPending is claim's error for a request that is not pending. s.mu is
// held.
func (s *pending) notPending(k pendingKey) error {
	if again, closed := s.closed[k]; closed && again {
		return fmt.Errorf("%w: %s from %s was not answered before Close; it is delivered again at the next start", ErrClosed, k.id, k.peer)
	} else if closed {
		return fmt.Errorf("%w: %s from %s was not answered before Close", ErrClosed, k.id, k.peer)
	}
	if s.wasAnswered(k) {
		return fmt.Errorf("%w: %s from %s", ErrAlreadyResponded, k.id, k.peer)
	}
	return fmt.Errorf("%w: %s from %s", ErrUnknownExchange, k.id, k.peer)
}

// has reports whether the request awaits the application's answer.
func (s *pending) has(p peer.ID, id ExchangeID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[pendingKey{p, id}]
	return ok
}
