package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip"
)

// forkConflict is a Conflict as the membership service raises it: a
// member's signed document of version 1 that differs from ours.
func forkConflict(t *testing.T) gossip.Conflict {
	t.Helper()
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	doc := func(expires time.Time, by tu.Identity) *membership.Document {
		d, err := membership.Genesis([]membership.Member{{ID: a.ID}, {ID: b.ID}}, 1, expires)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Sign(by.Key); err != nil {
			t.Fatal(err)
		}
		return d
	}
	now := time.Now().Truncate(time.Second)
	ours, theirs := doc(now.Add(time.Hour), a), doc(now.Add(2*time.Hour), b)
	return gossip.Conflict{Peer: b.ID, Version: 1, Hash: ours.Hash(), PeerHash: theirs.Hash(), PeerDocument: theirs}
}

// The member's document of a proven fork is kept in the data directory,
// under a name of its version, member and hash, and the printed event
// names the file; the same fork seen again replaces that file rather than
// adding one.
func TestForkDocumentKept(t *testing.T) {
	dir := t.TempDir()
	c := forkConflict(t)
	r := &runner{dataDir: dir, log: zap.NewNop()}
	ev := r.keepFork(c)
	want := filepath.Join(dir, forksDir, fmt.Sprintf("fork-v1-%s-%s.pb", c.Peer, c.PeerHash))
	if ev.File != want || ev.NotKept != "" {
		t.Fatalf("kept in %q (not kept: %q), want %q", ev.File, ev.NotKept, want)
	}
	got, err := membership.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash() != c.PeerHash || !got.SignedBy(c.Peer) {
		t.Errorf("the file holds %s, signed by the member: %v; want the member's document %s", got.Hash(), got.SignedBy(c.Peer), c.PeerHash)
	}
	if again := r.keepFork(c); again.File != want {
		t.Errorf("the same fork again: kept in %q, want %q", again.File, want)
	}
	if n, err := countForkFiles(filepath.Join(dir, forksDir)); err != nil || n != 1 {
		t.Errorf("%d files after the same fork twice (%v), want 1", n, err)
	}

	var j map[string]any
	if err := json.Unmarshal(renderEvent(ev, true), &j); err != nil {
		t.Fatal(err)
	}
	if j["event"] != "membership_conflict" || j["peer_document_file"] != want || j["peer_hash"] != c.PeerHash.String() {
		t.Errorf("json: %v", j)
	}
	if _, ok := j["peer_document_not_kept"]; ok {
		t.Errorf("json says not kept: %v", j)
	}
	if text := string(renderEvent(ev, false)); !strings.HasSuffix(text, "; its document kept in "+want+"\n") {
		t.Errorf("text: %q", text)
	}
}

// Past maxForkFiles documents a new fork's is not kept, and the event
// says why; the files already there stay, and so does one replaced.
func TestForkDocumentsBounded(t *testing.T) {
	dir := t.TempDir()
	forks := filepath.Join(dir, forksDir)
	if err := os.MkdirAll(forks, 0o700); err != nil {
		t.Fatal(err)
	}
	first := forkConflict(t)
	r := &runner{dataDir: dir, log: zap.NewNop()}
	if ev := r.keepFork(first); ev.File == "" {
		t.Fatalf("first fork not kept: %s", ev.NotKept)
	}
	for i := 1; i < maxForkFiles; i++ {
		if err := os.WriteFile(filepath.Join(forks, fmt.Sprintf("fork-v%d-x-y.pb", i+1)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ev := r.keepFork(forkConflict(t))
	if ev.File != "" || !strings.Contains(ev.NotKept, fmt.Sprintf("holds %d fork documents already", maxForkFiles)) {
		t.Fatalf("a fork past the bound: kept in %q, not kept: %q", ev.File, ev.NotKept)
	}
	if n, err := countForkFiles(forks); err != nil || n != maxForkFiles {
		t.Errorf("%d files (%v), want %d", n, err, maxForkFiles)
	}
	if again := r.keepFork(first); again.File == "" {
		t.Errorf("a fork already kept, seen again past the bound: not kept: %s", again.NotKept)
	}
	var j map[string]any
	if err := json.Unmarshal(renderEvent(ev, true), &j); err != nil {
		t.Fatal(err)
	}
	if _, ok := j["peer_document_file"]; ok || j["peer_document_not_kept"] != ev.NotKept {
		t.Errorf("json: %v", j)
	}
}

// A node without a data directory keeps nothing and says so.
func TestForkDocumentNotKeptEphemeral(t *testing.T) {
	ev := (&runner{log: zap.NewNop()}).keepFork(forkConflict(t))
	if ev.File != "" || ev.NotKept != "no data directory (--ephemeral)" {
		t.Fatalf("kept in %q, not kept: %q", ev.File, ev.NotKept)
	}
	if text := string(renderEvent(ev, false)); !strings.HasSuffix(text, "; its document not kept: no data directory (--ephemeral)\n") {
		t.Errorf("text: %q", text)
	}
}
