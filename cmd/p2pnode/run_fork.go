package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/internal/atomicfile"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip"
)

// The evidence of a membership fork: the member's document that a
// gossip.Conflict carries, kept in the data directory. It is the proof
// that a threshold of members signed two documents of one version, and
// the event alone loses it once the process ends.

// forksDir is where run keeps the members' documents of proven forks, in
// the data directory.
const forksDir = "forks"

// maxForkFiles bounds the documents kept in forksDir. Past it a new
// fork's document is not written (the event says so): the first ones are
// kept, since any one of them proves the fork, and colluding members who
// sign document after document cannot fill the disk.
const maxForkFiles = 64

// forkEvent is a gossip.Conflict as run prints it: with the file it kept
// the member's document in, or why it did not keep it.
type forkEvent struct {
	gossip.Conflict
	// File is the member's document, in forksDir; empty when not kept.
	File string
	// NotKept says why the document was not kept, when File is empty.
	NotKept string
}

// forkFileName names the document of c: the version, the member and the
// document's hash, so that a listing tells the forks apart and the same
// fork seen again (after a restart) lands on the same file.
func forkFileName(c gossip.Conflict) string {
	return fmt.Sprintf("fork-v%d-%s-%s.pb", c.Version, c.Peer, c.PeerHash)
}

// saveForkDocument writes the member's document of c into dir/forksDir,
// atomically, and returns its path. A file of that name is replaced (the
// same document, maybe with other signatures); a new one is refused once
// maxForkFiles are there.
func saveForkDocument(dir string, c gossip.Conflict) (string, error) {
	if c.PeerDocument == nil {
		return "", errors.New("the event carries no document")
	}
	data, err := c.PeerDocument.Encode()
	if err != nil {
		return "", err
	}
	forks := filepath.Join(dir, forksDir)
	if err := os.MkdirAll(forks, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(forks, forkFileName(c))
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		n, err := countForkFiles(forks)
		if err != nil {
			return "", err
		}
		if n >= maxForkFiles {
			return "", fmt.Errorf("%s holds %d fork documents already, the most kept: move them away to keep new ones", forks, n)
		}
	} else if err != nil {
		return "", err
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// countForkFiles counts the documents in forks (not atomicfile's
// temporary files, which start with a dot).
func countForkFiles(forks string) (int, error) {
	entries, err := os.ReadDir(forks)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), ".pb") {
			n++
		}
	}
	return n, nil
}

// keepFork keeps the member's document of c in the node's data directory,
// and returns the event to print. A node without one (--ephemeral) keeps
// nothing; a failure to write is logged and said in the event, and the
// node runs on: the fork is still reported.
func (r *runner) keepFork(c gossip.Conflict) forkEvent {
	if r.dataDir == "" {
		return forkEvent{Conflict: c, NotKept: "no data directory (--ephemeral)"}
	}
	path, err := saveForkDocument(r.dataDir, c)
	if err != nil {
		r.log.Error("membership fork: the member's document was not kept", zap.Stringer("peer", c.Peer),
			zap.Uint64("version", c.Version), zap.Stringer("peer_hash", c.PeerHash), zap.Error(err))
		return forkEvent{Conflict: c, NotKept: err.Error()}
	}
	return forkEvent{Conflict: c, File: path}
}
