package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runInProc runs one p2pnode invocation in this process.
func runInProc(args ...string) result {
	var out, errOut bytes.Buffer
	code := execute(args, stdio{in: strings.NewReader(""), out: &out, err: &errOut})
	return result{out.String(), errOut.String(), code}
}

// allowlist add and remove on a file that is a symbolic link (into a
// configuration checkout, in another directory) rewrite the file the link
// points to, with its mode, and leave the link a link. They renamed the new
// file over the link: the link was gone, and the node watching it, or the
// next checkout, no longer saw the same file.
func TestAllowlistEditFollowsSymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf, node := filepath.Join(dir, "conf"), filepath.Join(dir, "node")
	for _, d := range []string{conf, node} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	target := filepath.Join(conf, "allowlist.yaml")
	if err := os.WriteFile(target, []byte("peers: []\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(target, 0o640); err != nil { // whatever the umask
		t.Fatal(err)
	}
	link := filepath.Join(node, "allowlist.yaml")
	if err := os.Symlink(filepath.Join("..", "conf", "allowlist.yaml"), link); err != nil {
		t.Fatal(err)
	}
	check := func(step string, wantPeer bool) {
		t.Helper()
		fi, err := os.Lstat(link)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Fatalf("after %s: %s is no longer a symbolic link (%v, %v)", step, link, fi.Mode(), err)
		}
		fi, err = os.Stat(target)
		if err != nil || fi.Mode().Perm() != 0o640 {
			t.Fatalf("after %s: target mode %v, %v; want 0640", step, fi.Mode(), err)
		}
		data, err := os.ReadFile(target)
		if err != nil || strings.Contains(string(data), testPeer) != wantPeer {
			t.Fatalf("after %s: target holds %q (%v); peer listed: want %v", step, data, err, wantPeer)
		}
		for _, d := range []string{conf, node} {
			entries, _ := os.ReadDir(d)
			if len(entries) != 1 {
				t.Fatalf("after %s: %s holds %v", step, d, entries)
			}
		}
	}
	if r := runInProc("allowlist", "add", link, "--id", testPeer, "--name", "op-2"); r.code != 0 {
		t.Fatalf("add: %+v", r)
	}
	check("add", true)
	if r := runInProc("allowlist", "list", link); r.code != 0 || !strings.Contains(r.stdout, "op-2") {
		t.Fatalf("list: %+v", r)
	}
	if r := runInProc("allowlist", "remove", link, "--id", testPeer); r.code != 0 {
		t.Fatalf("remove: %+v", r)
	}
	check("remove", false)
}

// A symbolic link to nothing is refused by add (which would otherwise take
// it for a file not yet created and put a plain file in its place) and by
// remove, with a message that says it is a link and where it points, not
// "no such file" about a name ls shows.
func TestAllowlistEditDanglingSymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	link := filepath.Join(dir, "allowlist.yaml")
	if err := os.Symlink("missing/allowlist.yaml", link); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"allowlist", "add", link, "--id", testPeer},
		{"allowlist", "remove", link, "--id", testPeer},
		{"allowlist", "check", link},
	} {
		r := runInProc(args...)
		want := link + ` is a symbolic link to "missing/allowlist.yaml", which does not exist`
		if r.code != exitError || !strings.Contains(r.stderr, want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", args[:2], r.code, r.stderr, exitError, want)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Fatalf("%v: the link is gone (%v, %v)", args[:2], fi, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Fatalf("%v: left %v", args[:2], entries)
		}
	}
}

// add refuses an --id that decodes but holds no valid public key (a
// mistyped character, a hashed ID) as the usage mistake it is, exit 2 as
// for any invalid flag value, and writes nothing. It exited 1, as if
// carrying out a valid command had failed.
func TestAllowlistAddInvalidKeyIsUsage(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "allowlist.yaml")
	for _, id := range []string{
		"QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",        // a hash, no key inside
		"16Uiu2HAm8SrT12jYh6Bv4eW8kFxyXBHTvZKBFx1W9WHYzcn2k5w2", // not a point on the curve
	} {
		r := runInProc("allowlist", "add", file, "--id", id)
		if r.code != exitUsage || !strings.Contains(r.stderr, id) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("add --id %s: %+v; want exit %d naming it", id, r, exitUsage)
		}
		if _, err := os.Lstat(file); err == nil {
			t.Fatalf("add --id %s wrote the file", id)
		}
	}
}
