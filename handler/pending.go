package handler

import (
	"fmt"
	"sync"

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
	mu sync.Mutex
	m  map[pendingKey]bool // true once claimed by Response
	// answered remembers the last answeredCap exchanges that ended after
	// Response claimed them, so that a second Response still says
	// "already responded" once the first answer's exchange has ended,
	// rather than the misleading "unknown exchange".
	answered map[pendingKey]struct{}
	order    []pendingKey // ring of answered, oldest at next
	next     int
	// closed holds the requests that Close ended unanswered, so that a
	// Response racing it says ErrClosed rather than "unknown exchange".
	// It only grows while the handler closes, by the requests it held.
	closed map[pendingKey]bool // true: with a store, delivered again at the next start
}

// answeredCap bounds pending.answered: a second Response comes moments
// after the first, and 4096 keys are about 250 KiB.
const answeredCap = 4096

type pendingKey struct {
	peer peer.ID
	id   ExchangeID
}

func (s *pending) add(p peer.ID, id ExchangeID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[pendingKey]bool)
	}
	s.m[pendingKey{p, id}] = false
}

// remove ends the request's wait for an answer and reports whether
// Response had claimed it: from here a Response fails, so an unclaimed
// request is never answered in this life.
func (s *pending) remove(p peer.ID, id ExchangeID) (claimed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := pendingKey{p, id}
	claimed = s.m[k]
	if claimed {
		s.rememberAnswered(k)
	}
	delete(s.m, k)
	return claimed
}

func (s *pending) rememberAnswered(k pendingKey) {
	if s.answered == nil {
		s.answered = make(map[pendingKey]struct{})
	}
	if len(s.order) < answeredCap {
		s.order = append(s.order, k)
	} else {
		delete(s.answered, s.order[s.next])
		s.order[s.next] = k
		s.next = (s.next + 1) % answeredCap
	}
	s.answered[k] = struct{}{}
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

// claim reserves the right to answer the request, once.
func (s *pending) claim(p peer.ID, id ExchangeID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	claimed, ok := s.m[pendingKey{p, id}]
	_, ended := s.answered[pendingKey{p, id}]
	again, closed := s.closed[pendingKey{p, id}]
	switch {
	case !ok && closed && again:
		return fmt.Errorf("%w: %s from %s was not answered before Close; it is delivered again at the next start", ErrClosed, id, p)
	case !ok && closed:
		return fmt.Errorf("%w: %s from %s was not answered before Close", ErrClosed, id, p)
	case !ok && ended:
		return fmt.Errorf("%w: %s from %s", ErrAlreadyResponded, id, p)
	case !ok:
		return fmt.Errorf("%w: %s from %s", ErrUnknownExchange, id, p)
	case claimed:
		return fmt.Errorf("%w: %s from %s", ErrAlreadyResponded, id, p)
	}
	s.m[pendingKey{p, id}] = true
	return nil
}

// unclaim gives the right to answer back, when the answer could not be
// recorded.
func (s *pending) unclaim(p peer.ID, id ExchangeID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[pendingKey{p, id}]; ok {
		s.m[pendingKey{p, id}] = false
	}
}

// has reports whether the request awaits the application's answer.
func (s *pending) has(p peer.ID, id ExchangeID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[pendingKey{p, id}]
	return ok
}
