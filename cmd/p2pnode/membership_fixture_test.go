package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// expiredGenesis is a membership whose version 1 has expired and whose
// version 2, which replaced it, never expires: what a node finds a year
// after its installation, when --membership still names the file it was
// first given.
type expiredGenesis struct {
	KeyA, KeyB string // the two members of version 1, who both signed version 2
	IDA, IDB   string
	V1, V2     string // the documents' files
}

// newExpiredGenesis writes keys a and b, an allowlist of both, version 1
// (threshold 2, expired an hour ago) and version 2 with the given
// `membership propose` changes (such as "--add", id+",carol"), signed by a
// and b, all in dir.
func newExpiredGenesis(t *testing.T, dir string, changes ...string) expiredGenesis {
	t.Helper()
	var g expiredGenesis
	g.KeyA, g.IDA = newKey(t, dir, "a.key")
	g.KeyB, g.IDB = newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, g.IDA, g.IDB)
	g.V1 = filepath.Join(dir, "membership-1.pb")
	// Written here, not by "membership init", which refuses an expiry in
	// the past.
	var members []membership.Member
	for _, s := range []string{g.IDA, g.IDB} {
		id, err := peer.Decode(s)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, membership.Member{ID: id})
	}
	v1, err := membership.Genesis(members, 2, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := membership.WriteFile(g.V1, v1); err != nil {
		t.Fatal(err)
	}
	g.V2 = filepath.Join(dir, "membership-2.pb")
	propose := append([]string{"membership", "propose", "--current", g.V1, "--out", g.V2, "--expires", "never"}, changes...)
	mustRun(t, dir, propose...)
	mustRun(t, dir, "membership", "sign", g.V2, "--key", g.KeyA)
	mustRun(t, dir, "membership", "sign", g.V2, "--key", g.KeyB)
	return g
}

// saveV2 puts version 2 in the data directory dataDir (made if missing), as
// a run that applied it leaves it, and returns the saved file's path.
func (g expiredGenesis) saveV2(t *testing.T, dataDir string) string {
	t.Helper()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(g.V2)
	if err != nil {
		t.Fatal(err)
	}
	saved := filepath.Join(dataDir, membershipFile)
	if err := os.WriteFile(saved, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	return saved
}
