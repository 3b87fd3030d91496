package membership

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// SaveNewer only ever moves forward, and leaves no temporary files.
func TestSaveNewer(t *testing.T) {
	ops := newOperators(t, 2, false)
	g := mustGenesis(t, ops, 1)
	v2 := propose(t, g, nil, ops[0])
	v3 := propose(t, v2, nil, ops[1])
	dir := t.TempDir()
	path := filepath.Join(dir, "membership.pb")

	if err := SaveNewer(path, v2); err != nil {
		t.Fatal(err)
	}
	for _, old := range []*Document{g, v2} {
		err := SaveNewer(path, old)
		wantErr(t, err, ErrStale)
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error does not name the file: %v", err)
		}
	}
	if err := SaveNewer(path, v3); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil || got.Hash() != v3.Hash() || len(got.Signatures()) != 1 {
		t.Fatalf("read back %v, %v", got, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("left behind %s", e.Name())
		}
	}

	// A file that does not decode is not overwritten.
	if err := os.WriteFile(path, []byte("peers: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SaveNewer(path, v3); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("replaced an unreadable file: %v", err)
	}
	_, err = ReadFile(path)
	wantErr(t, err, ErrMalformed)
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error does not name the file: %v", err)
	}
}

// Concurrent SaveNewer calls end with the newest version on disk, and each
// older one either saved before it or refused as stale.
func TestSaveNewerConcurrent(t *testing.T) {
	ops := newOperators(t, 1, false)
	docs := []*Document{mustGenesis(t, ops, 1)}
	for range 7 {
		docs = append(docs, propose(t, docs[len(docs)-1], nil, ops[0]))
	}
	path := filepath.Join(t.TempDir(), "membership.pb")
	errs := make(chan error, len(docs))
	for _, d := range docs {
		go func() { errs <- SaveNewer(path, d) }()
	}
	for range docs {
		if err := <-errs; err != nil && !errors.Is(err, ErrStale) {
			t.Fatal(err)
		}
	}
	got, err := ReadFile(path)
	if err != nil || got.Version() != 8 {
		t.Fatalf("on disk: %v, %v", got, err)
	}
}
