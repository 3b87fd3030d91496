package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// A node restarted with the --membership FILE it was first given (version
// 1) starts from the newer version saved in its data directory, even once
// version 1 has expired: the expiry of a version that has been replaced
// does not matter (docs/membership.md, Validity rule 3 and Expiry).
// Checking the file given as a genesis document before choosing refused
// to start the node at all.
func TestMembershipRunStartsFromSavedAfterGenesisExpired(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Version 1 has expired (an hour ago: as it would a year after its
	// installation); version 2, which replaced it, never expires.
	_, idC := newKey(t, dir, "c.key")
	g := newExpiredGenesis(t, dir, "--add", idC+",carol")
	keyA, v1 := g.KeyA, g.V1
	mustRun(t, dir, "membership", "verify", g.V2, "--current", v1)

	// The data directory holds version 2, as an earlier run that applied
	// it leaves it.
	data := filepath.Join(dir, "a-data")
	g.saveV2(t, data)
	if r := runCLI(t, dir, "membership", "verify", v1); r.code != exitError || !strings.Contains(r.stderr, "expired") {
		t.Fatalf("version 1 should have expired: %+v", r)
	}

	p := startProc(t, "a", dir, true, "run", "--json", "--key", keyA, "--membership", v1,
		"--data-dir", data, "--listen", "/ip4/127.0.0.1/tcp/0")
	l := p.expect("listening event", match("listening"))[0]
	if l.Str("membership_version") != "2" {
		t.Fatalf("listening: %v", l)
	}
	stopAll(t, p)
}

// combine --out never replaces a file that holds another document than
// the copies (here the current version, which every later verify needs),
// and does not drop the signatures of an --out that holds the same
// proposal without being named among the copies.
func TestMembershipCombineDoesNotClobberOut(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	keyC, idC := newKey(t, dir, "c.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB, idC)
	v1 := filepath.Join(dir, "membership-1.pb")
	mustRun(t, dir, "membership", "init", "--allowlist", list, "--threshold", "2", "--out", v1)
	prop := filepath.Join(dir, "proposal.pb")
	mustRun(t, dir, "membership", "propose", "--current", v1, "--out", prop, "--edit", idC+":name=carol")
	data, err := os.ReadFile(prop)
	if err != nil {
		t.Fatal(err)
	}
	copies := map[string]string{}
	for who, key := range map[string]string{"a": keyA, "b": keyB, "c": keyC} {
		c := filepath.Join(dir, who+"-proposal.pb")
		if err := os.WriteFile(c, data, 0o644); err != nil {
			t.Fatal(err)
		}
		mustRun(t, dir, "membership", "sign", c, "--key", key)
		copies[who] = c
	}

	// --out names the current version by mistake: refused, untouched.
	before, err := os.ReadFile(v1)
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, dir, "membership", "combine", "--out", v1, copies["a"], copies["b"])
	after, _ := os.ReadFile(v1)
	if r.code != exitError || !bytes.Equal(before, after) {
		t.Errorf("combine over another document: exit %d, %s replaced: %v; stderr %q", r.code, v1, !bytes.Equal(before, after), r.stderr)
	}

	// --out already holds A's and B's signatures; combining C's copy into
	// it keeps them.
	v2 := filepath.Join(dir, "membership-2.pb")
	mustRun(t, dir, "membership", "combine", "--out", v2, copies["a"], copies["b"])
	mustRun(t, dir, "membership", "combine", "--out", v2, copies["c"])
	var shown jsonDocument
	mustJSON(t, mustRun(t, dir, "membership", "show", v2, "--json"), &shown)
	if len(shown.Signatures) != 3 {
		t.Errorf("combine into a signed copy of the same proposal: %d signatures left (%s), want 3", len(shown.Signatures), strings.Join(shown.Signatures, ","))
	}
}

// sign adds the operator's signature to a copy that already names the
// operator as a signer with a signature that does not verify (the
// proposer's doing, or a corrupt copy): "already signed" was false, and the
// operator could not sign that copy at all.
func TestMembershipSignReplacesForgedOwnSignature(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	v1 := filepath.Join(dir, "membership-1.pb")
	mustRun(t, dir, "membership", "init", "--allowlist", list, "--threshold", "1", "--out", v1)
	prop := filepath.Join(dir, "proposal.pb")
	mustRun(t, dir, "membership", "propose", "--current", v1, "--out", prop, "--edit", idB+":name=bob")
	d, err := membership.ReadFile(prop)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := peer.Decode(idA)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AddSignature(membership.Signature{Signer: pid, Sig: []byte("not a signature")}); err != nil {
		t.Fatal(err)
	}
	if err := membership.WriteFile(prop, d); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, dir, "membership", "sign", prop, "--key", keyA); r.code != 0 {
		t.Fatalf("sign: %+v", r)
	}
	if r := runCLI(t, dir, "membership", "verify", prop, "--current", v1); r.code != 0 {
		t.Fatalf("verify after sign: %+v", r)
	}
}

// sign repairs a copy holding [B valid, A corrupt, A valid]: the help says
// a signature naming the key that does not verify is replaced, but sign
// dropped it in memory, then refused ("already signed", exit 1) because a
// valid one remained, and left the corrupt one in the file.
func TestMembershipSignDropsForgedBesideValidOwn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	v1 := filepath.Join(dir, "membership-1.pb")
	mustRun(t, dir, "membership", "init", "--allowlist", list, "--threshold", "2", "--out", v1)
	prop := filepath.Join(dir, "proposal.pb")
	mustRun(t, dir, "membership", "propose", "--current", v1, "--out", prop, "--edit", idB+":name=bob")
	mustRun(t, dir, "membership", "sign", prop, "--key", keyB)
	mustRun(t, dir, "membership", "sign", prop, "--key", keyA)
	signed, err := membership.ReadFile(prop)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := peer.Decode(idA)
	if err != nil {
		t.Fatal(err)
	}
	d, err := membership.NewDocument(signed.Body())
	if err != nil {
		t.Fatal(err)
	}
	sigs := signed.Signatures()
	for _, s := range []membership.Signature{sigs[0], {Signer: pid, Sig: []byte("not a signature")}, sigs[1]} {
		if err := d.AddSignature(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := membership.WriteFile(prop, d); err != nil {
		t.Fatal(err)
	}

	r := runCLI(t, dir, "membership", "sign", prop, "--key", keyA)
	if r.code != 0 || !strings.Contains(r.stdout, "removed 1 signature by "+idA) || !strings.Contains(r.stdout, "already holds a valid signature") {
		t.Fatalf("sign: %+v", r)
	}
	after, err := membership.ReadFile(prop)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Signatures(); len(got) != 2 || got[0].Signer.String() != idB || got[1].Signer != pid {
		t.Fatalf("signatures after sign: %v", got)
	}
	v := mustRun(t, dir, "membership", "verify", prop, "--current", v1)
	if strings.Contains(v, "does not count") {
		t.Errorf("verify after sign:\n%s", v)
	}

	// Signing again: nothing bad left to remove, already signed.
	if r := runCLI(t, dir, "membership", "sign", prop, "--key", keyA); r.code != exitError || !strings.Contains(r.stderr, "already signed") {
		t.Errorf("sign again: %+v", r)
	}
}
