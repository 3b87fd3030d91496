package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// A fork between two running nodes: a and b, members of a version 1 of
// threshold 1, each put in force its own version 2 (a signed one, b
// another) before they met. Once connected, each reports the fork; a
// keeps b's document of version 2 in its data directory and its event
// names the file, b, ephemeral, says it kept nothing.
func TestForkDocumentKeptByRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	v1 := filepath.Join(dir, "membership-1.pb")
	mustRun(t, dir, "membership", "init", "--allowlist", list, "--threshold", "1", "--out", v1)
	v2a, v2b := filepath.Join(dir, "membership-2a.pb"), filepath.Join(dir, "membership-2b.pb")
	mustRun(t, dir, "membership", "propose", "--current", v1, "--out", v2a, "--edit", idA+":name=alice")
	mustRun(t, dir, "membership", "sign", v2a, "--key", keyA)
	mustRun(t, dir, "membership", "propose", "--current", v1, "--out", v2b, "--edit", idB+":name=bob")
	mustRun(t, dir, "membership", "sign", v2b, "--key", keyB)
	docA, err := membership.ReadFile(v2a)
	if err != nil {
		t.Fatal(err)
	}
	docB, err := membership.ReadFile(v2b)
	if err != nil {
		t.Fatal(err)
	}

	dataA, apiB := filepath.Join(dir, "a-data"), filepath.Join(dir, "b.sock")
	// --keep-connection: the connection the send opens carries the fork's
	// exchange to its end. One closed after the send can cut it short on a
	// loaded machine: the side that did not get the other's document then
	// reports the fork unchecked and asks again only ten minutes later.
	a := startProc(t, "a", dir, true, "run", "--json", "--key", keyA, "--membership", v1, "--keep-connection",
		"--data-dir", dataA, "--listen", "/ip4/127.0.0.1/tcp/0")
	a.expect("listening event", match("listening"))
	b := startProc(t, "b", dir, true, "run", "--json", "--key", keyB, "--membership", v1, "--keep-connection",
		"--ephemeral", "--api", apiB, "--listen", "/ip4/127.0.0.1/tcp/0")
	lb := b.expect("listening event", match("listening"))[0]
	// Neither knows the other's address yet: each applies its own version 2.
	mustRun(t, dir, "membership", "submit", v2a, "--data-dir", dataA)
	a.expect("a's version 2", match("membership_applied", "version", 2, "hash", docA.Hash().String()))
	mustRun(t, dir, "membership", "submit", v2b, "--api", apiB)
	b.expect("b's version 2", match("membership_applied", "version", 2, "hash", docB.Hash().String()))

	a.send(map[string]any{"cmd": "send", "peer": idB, "addr": firstAddr(t, lb), "data": "hello"})
	kept := filepath.Join(dataA, forksDir, fmt.Sprintf("fork-v2-%s-%s.pb", idB, docB.Hash()))
	a.expect("a's fork event", match("membership_conflict", "peer", idB, "version", 2,
		"hash", docA.Hash().String(), "peer_hash", docB.Hash().String(), "peer_document_file", kept))
	b.expect("b's fork event", match("membership_conflict", "peer", idA, "version", 2,
		"peer_hash", docA.Hash().String(), "peer_document_not_kept", "no data directory (--ephemeral)"))
	stopAll(t, a, b)

	got, err := membership.ReadFile(kept)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash() != docB.Hash() || !got.SignedBy(docB.Signatures()[0].Signer) {
		t.Fatalf("%s holds %s, want b's version 2 %s with its signature", kept, got.Hash(), docB.Hash())
	}
	if entries, err := os.ReadDir(filepath.Join(dataA, forksDir)); err != nil || len(entries) != 1 {
		t.Fatalf("forks directory: %v, %v; want the one document", entries, err)
	}
}
