package gossip

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/internal/outbox"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// ErrClosed is returned by Submit once the service is closed.
var ErrClosed = errors.New("gossip: closed")

// ErrPersist wraps the error of a valid version the node could not save:
// it was not applied.
var ErrPersist = errors.New("gossip: cannot persist the membership document")

// Service keeps a node's membership document current: it exchanges versions
// with every member it connects to, applies valid newer ones to the
// allowlist, and pushes them on. Create it with New, stop it with Close.
type Service struct {
	cfg     Config
	log     *zap.Logger
	metrics *metrics
	events  *outbox.Outbox[Event]

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // sessions and pushes

	// mu guards the document and its history, and serializes installing
	// a version: the check that it still follows the current one, persist
	// and replace happen as one step. Signatures are verified before it is
	// taken, so that a member sending documents does not hold up Current,
	// which admission and every session read.
	mu    sync.Mutex
	chain []*membership.Document // oldest first, contiguous, last = current

	sessMu   sync.Mutex
	closed   bool
	inbound  map[peer.ID]*inSession  // peers with a session they opened, running
	outbound map[peer.ID]*outSession // peers with a session we opened, running
	notifee  *network.NotifyBundle

	// alarmMu guards what keeps a member from raising one alarm over and
	// over: the forks reported, the fork exchanges done, the last Behind
	// per peer.
	alarmMu sync.Mutex
	forks   map[forkKey]time.Time
	claims  map[claimKey]claimMark
	behinds map[peer.ID]behindMark
	logs    *peerLog
	clock   func() time.Time // time.Now: when Behind events and log lines were emitted
}

// inSession tracks a session a peer opened, running: how many more it
// opened meanwhile, refused.
type inSession struct{ refused int }

// outSession tracks our running session with one peer; again asks for one
// more once it ends, because a version applied meanwhile may not have been
// in its Hello.
type outSession struct{ again bool }

// New starts the service: it makes the allowlist hold Current's members,
// answers sessions on ProtocolID, and opens one on every new outbound
// connection to a member.
func New(cfg Config) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	chain, err := buildChain(cfg.History, cfg.Current, cfg.MaxHistory)
	if err != nil {
		return nil, err
	}
	if err := checkSaved(cfg.Path, cfg.Current); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	if err := cfg.Allowlist.Replace(cfg.Current.Entries()); err != nil {
		return nil, fmt.Errorf("gossip: allowlist of %s: %w", cfg.Current, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg:      cfg,
		log:      cfg.Logger.Named("membership"),
		metrics:  m,
		events:   outbox.New(cfg.EventBuffer, outbox.Options[Event]{Limit: eventLimit}),
		ctx:      ctx,
		cancel:   cancel,
		chain:    chain,
		inbound:  make(map[peer.ID]*inSession),
		outbound: make(map[peer.ID]*outSession),
		forks:    make(map[forkKey]time.Time),
		claims:   make(map[claimKey]claimMark),
		behinds:  make(map[peer.ID]behindMark),
		clock:    time.Now,
	}
	s.logs = newPeerLog(s.log, s.clock)
	m.setVersion(cfg.Current.Version(), false)
	cfg.Host.SetStreamHandler(ProtocolID, s.handleStream)
	s.notifee = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		// The dialing side opens the session, so one connection runs one.
		if c.Stat().Direction == network.DirOutbound {
			s.syncPeer(c.RemotePeer())
		}
	}}
	cfg.Host.Network().Notify(s.notifee)
	// Connections that opened before the notifee was registered.
	for _, c := range cfg.Host.Network().Conns() {
		if c.Stat().Direction == network.DirOutbound {
			s.syncPeer(c.RemotePeer())
		}
	}
	return s, nil
}

// buildChain checks that history links up to current and keeps at most
// keep versions.
func buildChain(history []*membership.Document, current *membership.Document, keep int) ([]*membership.Document, error) {
	chain := append(append([]*membership.Document(nil), history...), current)
	for i := 1; i < len(chain); i++ {
		prev, d := chain[i-1], chain[i]
		if d.Version() != prev.Version()+1 || d.Body().Prev != prev.Hash() {
			return nil, fmt.Errorf("%w: history: %s does not follow %s", ErrConfig, d, prev)
		}
	}
	if len(chain) > keep {
		chain = chain[len(chain)-keep:]
	}
	return chain, nil
}

// checkSaved refuses to start from current when path holds a newer or a
// different version: the node would go back, and SaveNewer would refuse
// every version up to the saved one. A missing or older file is replaced
// by current, so that the file always holds the version in force.
func checkSaved(path string, current *membership.Document) error {
	if path == "" {
		return nil
	}
	saved, err := membership.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("%w: %w", ErrConfig, err)
	case saved.Version() > current.Version():
		return fmt.Errorf("%w: %s holds version %d, newer than the current version %d: start from it", ErrConfig, path, saved.Version(), current.Version())
	case saved.Version() == current.Version() && saved.Hash() != current.Hash():
		return fmt.Errorf("%w: %s holds another version %d than the current one", ErrConfig, path, saved.Version())
	case saved.Version() == current.Version():
		return nil
	}
	if err := membership.SaveNewer(path, current); err != nil {
		return fmt.Errorf("%w: %w", ErrPersist, err)
	}
	return nil
}

// Events delivers what the service did and refused. It is closed after
// Close. Events past a backlog of 1024 unread ones are dropped.
func (s *Service) Events() <-chan Event { return s.events.C() }

// Current returns the version in force.
func (s *Service) Current() *membership.Document {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chain[len(s.chain)-1]
}

// Submit applies d, a new version handed over by the local operator, and
// pushes it to every connected member. d must be the next version, valid
// against the current one: otherwise Submit returns VerifyNext's error
// (matching membership.ErrThreshold, ErrBadLink, ErrStale...) and nothing is
// applied or sent. The push happens in the background; Submit returns once
// d is persisted and in force.
func (s *Service) Submit(ctx context.Context, d *membership.Document) error {
	_, err := s.SubmitReport(ctx, d)
	return err
}

// SubmitReport is Submit, and also returns what the verification found:
// the signatures that counted and those that did not, with the reason,
// for an operator to read when d is refused.
func (s *Service) SubmitReport(ctx context.Context, d *membership.Document) (membership.Report, error) {
	if err := ctx.Err(); err != nil {
		return membership.Report{}, err
	}
	if s.ctx.Err() != nil {
		return membership.Report{}, ErrClosed
	}
	rep, err := s.apply(d, "")
	if err != nil {
		return rep, err
	}
	s.pushAll("")
	return rep, nil
}

// Close stops answering and opening sessions, ends the running ones and
// closes Events.
func (s *Service) Close() error {
	s.sessMu.Lock()
	if s.closed {
		s.sessMu.Unlock()
		return nil
	}
	s.closed = true
	s.sessMu.Unlock()
	s.cfg.Host.RemoveStreamHandler(ProtocolID)
	s.cfg.Host.Network().StopNotify(s.notifee)
	s.cancel()
	s.wg.Wait()
	s.events.Close()
	return nil
}

// apply verifies d against the current version and, if it is the valid
// next one, persists it and puts it in force. The error matches the
// membership sentinels for an invalid d, ErrPersist for a local failure.
func (s *Service) apply(d *membership.Document, from peer.ID) (membership.Report, error) {
	// Verified without the lock: the signature checks take up to a
	// thousand verifications, and any member can send a document.
	cur := s.Current()
	rep, err := s.cfg.verify(cur, d, s.cfg.Now())
	if err != nil {
		return rep, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := s.chain[len(s.chain)-1]; now != cur {
		// Another version was installed during the verification. Versions
		// only go forward and d is cur+1, so d is at or below it: applying
		// d would go back, or fork.
		return rep, fmt.Errorf("gossip: version %d was verified against version %d, replaced by version %d meanwhile: %w, %w",
			d.Version(), cur.Version(), now.Version(), membership.ErrStale, membership.ErrNotNext)
	}
	if s.cfg.Path != "" {
		if err := membership.SaveNewer(s.cfg.Path, d); err != nil {
			return rep, fmt.Errorf("%w: %w", ErrPersist, err)
		}
	}
	if err := s.cfg.Allowlist.Replace(d.Entries()); err != nil {
		// Members were checked as allowlist entries when d was decoded;
		// this would be a disagreement between the packages.
		return rep, fmt.Errorf("%w: allowlist: %w", ErrPersist, err)
	}
	s.chain = append(s.chain, d)
	if len(s.chain) > s.cfg.MaxHistory {
		// A copy, so the versions dropped are not kept alive by the
		// backing array.
		s.chain = slices.Clone(s.chain[len(s.chain)-s.cfg.MaxHistory:])
	}
	added, removed := memberDiff(cur, d)
	s.log.Info("membership version applied", zap.Stringer("doc", d), zap.Stringer("from", from),
		zap.Int("added", len(added)), zap.Int("removed", len(removed)))
	s.metrics.setVersion(d.Version(), true)
	s.events.Push(Applied{Version: d.Version(), Hash: d.Hash(), From: from, Added: added, Removed: removed}, true)
	return rep, nil
}

// memberDiff lists the members of next that cur lacks, and the reverse.
func memberDiff(cur, next *membership.Document) (added, removed []peer.ID) {
	cb, nb := cur.Body(), next.Body()
	for _, m := range nb.Members {
		if _, ok := cb.Member(m.ID); !ok {
			added = append(added, m.ID)
		}
	}
	for _, m := range cb.Members {
		if _, ok := nb.Member(m.ID); !ok {
			removed = append(removed, m.ID)
		}
	}
	return added, removed
}

// chainAfter returns the versions after version v, oldest first, if the
// service holds all of them and the first links to hash; ok is false when
// it cannot serve a peer at (v, hash).
func (s *Service) chainAfter(v uint64, hash membership.Hash) (docs []*membership.Document, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	base := s.chain[0].Version()
	if v+1 < base {
		return nil, false
	}
	docs = append(docs, s.chain[v+1-base:]...)
	if len(docs) == 0 || docs[0].Body().Prev != hash {
		return nil, false
	}
	return docs, true
}

// docAt returns version v, if the service holds it.
func (s *Service) docAt(v uint64) (*membership.Document, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	base := s.chain[0].Version()
	if v < base || v > s.chain[len(s.chain)-1].Version() {
		return nil, false
	}
	return s.chain[v-base], true
}

// isMember reports whether p is a member of the current version.
func (s *Service) isMember(p peer.ID) bool {
	_, ok := s.Current().Body().Member(p)
	return ok
}

// pushAll opens a session with every connected member but except.
func (s *Service) pushAll(except peer.ID) {
	for _, p := range s.cfg.Host.Network().Peers() {
		if p != except && p != s.cfg.Host.ID() && s.isMember(p) {
			s.syncPeer(p)
		}
	}
}

// syncPeer runs a session with p, now or, if one is running, right after
// it.
func (s *Service) syncPeer(p peer.ID) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if s.closed {
		return
	}
	if o := s.outbound[p]; o != nil {
		o.again = true
		return
	}
	o := &outSession{}
	s.outbound[p] = o
	// Held from here, inside the notification of the connection: before
	// the handler can have finished an exchange on it and closed it.
	release := s.hold(p)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer release()
		for {
			if s.isMember(p) {
				s.openSession(p)
			}
			s.sessMu.Lock()
			if o.again && !s.closed {
				o.again = false
				s.sessMu.Unlock()
				continue
			}
			delete(s.outbound, p)
			s.sessMu.Unlock()
			return
		}
	}()
}

// report emits a Rejected event, counts it and charges the sender if the
// reason is misbehaviour. It keeps the first maxEventRejections
// rejections of the report, in a copy so the event does not keep the
// others alive.
func (s *Service) report(ev Rejected) {
	if n := len(ev.Report.Rejected); n > maxEventRejections {
		kept := make([]membership.Rejection, maxEventRejections)
		copy(kept, ev.Report.Rejected)
		ev.Report.Rejected, ev.Omitted = kept, n-maxEventRejections
	}
	switch ev.Reason {
	case ReasonMalformed:
		ev.Charged = true
		s.cfg.Charge(ev.From, malformedCharge)
	case ReasonBadLink, ReasonThreshold, ReasonUnproven:
		ev.Charged = true
		s.cfg.Charge(ev.From, invalidCharge)
	case ReasonBusy:
		// handleStream decides: only a peer's second refusal and later.
		if ev.Charged {
			s.cfg.Charge(ev.From, invalidCharge)
		}
	}
	level, msg := zap.InfoLevel, "membership version refused"
	if ev.Reason == ReasonForkUnchecked {
		level, msg = zap.WarnLevel, "membership fork not checked: a member holds another document of a version this node cannot check"
	}
	s.logPeer(level, ev.From, "refused:"+string(ev.Reason), msg, zap.Uint64("version", ev.Version),
		zap.String("reason", string(ev.Reason)), zap.Bool("charged", ev.Charged), zap.Error(ev.Err))
	s.metrics.reject(ev.Reason)
	s.events.Push(ev, false)
}
