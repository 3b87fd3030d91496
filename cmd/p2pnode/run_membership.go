package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// membershipFile is where run keeps the membership version in force, in
// the data directory.
const membershipFile = "membership.pb"

// membershipChoice is the membership version a node with --membership
// starts from, and where run keeps the versions it receives.
type membershipChoice struct {
	doc  *membership.Document
	path string // membershipFile in the data directory; empty when ephemeral
	// saved: doc is the version saved in path, not the file given.
	saved bool
}

// source names where the version in force comes from, for people.
func (c membershipChoice) source(given string) string {
	if c.saved {
		return c.path
	}
	return given
}

// chooseMembership picks the version a node with --membership file starts
// from: the newer of the file given and the one saved in dataDir by an
// earlier run (empty dataDir: none, ephemeral), which may hold versions
// received since. A file given that is exactly the next version after the
// saved one must be valid against it (an unsigned proposal given by
// mistake is refused); one further ahead cannot be checked and is trusted,
// as version 1 is. Version 1 is checked as a genesis document only if it
// is the version put in force: a version 1 that a saved version replaced
// may have expired since, which does not matter. run, "config check", find
// and send --standalone all decide with this function, so that the check
// judges the version run would use, and the tools use it too.
func chooseMembership(file, dataDir string, now time.Time, log *zap.Logger) (membershipChoice, error) {
	given, err := membership.ReadFile(file)
	if err != nil {
		return membershipChoice{}, err
	}
	c := membershipChoice{doc: given}
	if dataDir != "" {
		c.path = filepath.Join(dataDir, membershipFile)
		saved, err := membership.ReadFile(c.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return membershipChoice{}, err
		case saved.Version() == given.Version() && saved.Hash() != given.Hash():
			return membershipChoice{}, fmt.Errorf("membership: %s holds another version %d than %s", c.path, saved.Version(), file)
		case saved.Version() >= given.Version():
			c.doc, c.saved = saved, true
		case given.Version() == saved.Version()+1:
			if _, err := membership.VerifyNext(saved, given, now); err != nil {
				return membershipChoice{}, fmt.Errorf("%s is not a valid successor of the version saved in %s: %w", file, c.path, err)
			}
		default:
			log.Warn("the membership file given is several versions ahead of the saved one: trusted without a check",
				zap.String("file", file), zap.Uint64("version", given.Version()), zap.Uint64("saved", saved.Version()))
		}
	}
	if c.doc.Version() == 1 {
		if _, err := membership.VerifyGenesis(c.doc, now); errors.Is(err, membership.ErrExpired) {
			return membershipChoice{}, fmt.Errorf("%s: %w (%s)", c.source(file), err, noNewerVersion(c.path))
		} else if err != nil {
			return membershipChoice{}, fmt.Errorf("%s: %w", c.source(file), err)
		}
	}
	return c, nil
}

// noNewerVersion says why an expired version 1 is the version in force,
// for the error that refuses it: what the operator must give instead.
func noNewerVersion(savedPath string) string {
	if savedPath == "" {
		return "an ephemeral node has no saved version to start from: give the version in force with --membership (config key membership)"
	}
	return "no newer version is saved in " + savedPath + ": give the version in force with --membership (config key membership)"
}

// chooseMembership puts in force the version the node starts from (see
// the function of that name); the allowlist takes its members before the
// node starts.
func (r *runner) chooseMembership() error {
	if r.dataDir == "" {
		r.log.Warn("--ephemeral: membership versions received are not saved; a restart goes back to the file given")
	}
	c, err := chooseMembership(r.cfg.Membership, r.dataDir, time.Now(), r.log)
	if err != nil {
		return err
	}
	r.memDoc, r.memPath = c.doc, c.path
	return r.list.Replace(r.memDoc.Entries())
}

// loadToolConfig loads the files of a command that starts a node of its
// own for one job (find, send --standalone) and returns its p2p
// configuration and, with --membership, the version in force (nil
// without). That version is the one run would start from with the same
// configuration (chooseMembership): the newer of the file given and the
// one saved in the data directory run would use (data_dir, or the
// default of the key), which the tool only reads. An expired version 1 is
// refused only when no newer version saved there replaces it; with
// ephemeral set there is none, and the error says so.
func loadToolConfig(cfg *runConfig, log *zap.Logger) (p2p.Config, *membership.Document, error) {
	pcfg, err := loadNodeFiles(cfg, log, membership.ReadFile)
	if err != nil || cfg.Membership == "" {
		return pcfg, nil, err
	}
	dataDir := ""
	if !cfg.Ephemeral {
		id, err := peer.IDFromPrivateKey(pcfg.Key)
		if err != nil {
			return pcfg, nil, err
		}
		if dataDir, err = cfg.dataDir(id); err != nil {
			return pcfg, nil, err
		}
	}
	c, err := chooseMembership(cfg.Membership, dataDir, time.Now(), log)
	if err != nil {
		return pcfg, nil, err
	}
	if pcfg.Allowlist, err = c.doc.Allowlist(); err != nil {
		return pcfg, nil, err
	}
	if c.saved {
		log.Info("membership: the version saved in the data directory replaces the file given",
			zap.String("file", c.path), zap.Uint64("version", c.doc.Version()))
	}
	return pcfg, c.doc, nil
}

// membershipInForce is the membership version whose members are the
// allowlist, nil when the node runs on an allowlist file (no --membership).
// Safe for the control API's goroutines: the service guards its chain.
func (r *runner) membershipInForce() *membership.Document {
	if r.mem == nil {
		return nil
	}
	return r.mem.Current()
}

// startMembership starts the membership protocol on the running node.
func (r *runner) startMembership(reg prometheus.Registerer) error {
	cfg := gossip.Config{
		Host:      r.node.Host(),
		Allowlist: r.list,
		Current:   r.memDoc,
		Path:      r.memPath,
		Charge:    r.node.Charge,
		Hold:      r.node.Hold,
		Logger:    r.log,
	}
	if reg != nil {
		cfg.Metrics = reg
	}
	var err error
	if r.mem, err = gossip.New(cfg); err != nil {
		return err
	}
	r.log.Info("membership", zap.Stringer("doc", r.memDoc))
	return nil
}

// printMembership prints the membership events until the service closes.
func (r *runner) printMembership() {
	if r.mem == nil {
		return
	}
	r.memDone = make(chan struct{})
	go func() {
		defer close(r.memDone)
		for ev := range r.mem.Events() {
			if c, ok := ev.(gossip.Conflict); ok {
				r.out.emit(r.keepFork(c))
				continue
			}
			r.out.emit(ev)
		}
	}()
}

// stopMembership closes the service and waits for its last event to be
// printed.
func (r *runner) stopMembership() {
	if r.mem == nil {
		return
	}
	_ = r.mem.Close()
	if r.memDone != nil {
		<-r.memDone
	}
}

// The JSON shapes of the membership events.
type (
	jsonMemApplied struct {
		Event   string   `json:"event"`
		Version uint64   `json:"version"`
		Hash    string   `json:"hash"`
		From    string   `json:"from,omitempty"`
		Added   []string `json:"added,omitempty"`
		Removed []string `json:"removed,omitempty"`
	}
	jsonMemRejected struct {
		Event   string `json:"event"`
		From    string `json:"from"`
		Version uint64 `json:"version,omitempty"`
		Reason  string `json:"reason"`
		Charged bool   `json:"charged"`
		Error   string `json:"error,omitempty"`
	}
	jsonMemBehind struct {
		Event       string `json:"event"`
		Peer        string `json:"peer"`
		PeerVersion uint64 `json:"peer_version"`
		Version     uint64 `json:"version"`
	}
	jsonMemConflict struct {
		Event    string `json:"event"`
		Peer     string `json:"peer"`
		Version  uint64 `json:"version"`
		Hash     string `json:"hash"`
		PeerHash string `json:"peer_hash"`
		// PeerDocumentFile is where the member's document was kept;
		// PeerDocumentNotKept why it was not (run_fork.go).
		PeerDocumentFile    string `json:"peer_document_file,omitempty"`
		PeerDocumentNotKept string `json:"peer_document_not_kept,omitempty"`
	}
)

func membershipJSON(ev any) any {
	switch e := ev.(type) {
	case gossip.Applied:
		j := jsonMemApplied{Event: "membership_applied", Version: e.Version, Hash: e.Hash.String()}
		if e.From != "" {
			j.From = e.From.String()
		}
		for _, p := range e.Added {
			j.Added = append(j.Added, p.String())
		}
		for _, p := range e.Removed {
			j.Removed = append(j.Removed, p.String())
		}
		return j
	case gossip.Rejected:
		j := jsonMemRejected{Event: "membership_rejected", From: e.From.String(), Version: e.Version, Reason: string(e.Reason), Charged: e.Charged}
		if e.Err != nil {
			j.Error = e.Err.Error()
		}
		return j
	case gossip.Behind:
		return jsonMemBehind{"membership_behind", e.Peer.String(), e.PeerVersion, e.Version}
	case gossip.Conflict:
		return membershipJSON(forkEvent{Conflict: e})
	case forkEvent:
		return jsonMemConflict{"membership_conflict", e.Peer.String(), e.Version, e.Hash.String(), e.PeerHash.String(), e.File, e.NotKept}
	}
	return nil
}

func membershipText(ev any) string {
	switch e := ev.(type) {
	case gossip.Applied:
		from := "submitted locally"
		if e.From != "" {
			from = "from " + e.From.String()
		}
		return fmt.Sprintf("membership version %d applied (%s), %s: %d added, %d removed", e.Version, e.Hash, from, len(e.Added), len(e.Removed))
	case gossip.Rejected:
		charged := ""
		if e.Charged {
			charged = ", charged"
		}
		return fmt.Sprintf("membership refused from %s (%s%s): %v", e.From, e.Reason, charged, e.Err)
	case gossip.Behind:
		return fmt.Sprintf("membership: %s holds version %d but cannot hand over the versions after %d: install them by hand", e.Peer, e.PeerVersion, e.Version)
	case gossip.Conflict:
		return membershipText(forkEvent{Conflict: e})
	case forkEvent:
		s := fmt.Sprintf("membership fork: %s holds another valid version %d (%s, ours %s)", e.Peer, e.Version, e.PeerHash, e.Hash)
		switch {
		case e.File != "":
			s += "; its document kept in " + e.File
		case e.NotKept != "":
			s += "; its document not kept: " + e.NotKept
		}
		return s
	}
	return ""
}
