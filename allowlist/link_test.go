package allowlist

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// mkdirs makes the named directories under a new temporary directory.
func mkdirs(t *testing.T, names ...string) []string {
	t.Helper()
	root := t.TempDir()
	var dirs []string
	for _, n := range names {
		d := filepath.Join(root, n)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	return dirs
}

// Save through a symbolic link replaces the file the link points to, in
// its directory, with its mode, and leaves the link a link (it renamed the
// new file over the link). A link to nothing is refused, naming where it
// points, and Load says the same.
func TestSaveFollowsSymlink(t *testing.T) {
	dirs := mkdirs(t, "conf", "node")
	target := filepath.Join(dirs[0], "peers.yaml")
	writeFile(t, target, "peers: []\n")
	if err := os.Chmod(target, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dirs[1], "peers.yaml")
	if err := os.Symlink("../conf/peers.yaml", link); err != nil {
		t.Fatal(err)
	}
	ids := newIDs(t, 1)
	if err := mustNew(t, Entry{ID: ids[0]}).Save(link); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("the link became %v (%v)", fi.Mode(), err)
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("target mode %v (%v); want 0600", fi.Mode(), err)
	}
	if l, err := Load(target); err != nil || !l.Contains(ids[0]) {
		t.Fatalf("target not saved: %v", err)
	}

	dangling := filepath.Join(dirs[1], "gone.yaml")
	if err := os.Symlink("../conf/missing.yaml", dangling); err != nil {
		t.Fatal(err)
	}
	want := dangling + ` is a symbolic link to "../conf/missing.yaml", which does not exist`
	err := mustNew(t).Save(dangling)
	if !errors.Is(err, ErrDanglingLink) || !strings.Contains(err.Error(), want) {
		t.Errorf("Save: %v; want ErrDanglingLink and %q", err, want)
	}
	if fi, err := os.Lstat(dangling); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the dangling link became %v (%v)", fi.Mode(), err)
	}
	if _, err := Load(dangling); !errors.Is(err, ErrDanglingLink) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), want) {
		t.Errorf("Load: %v", err)
	}
	for _, d := range dirs {
		if entries, _ := os.ReadDir(d); len(entries) > 2 {
			t.Errorf("%s holds %v", d, entries)
		}
	}
}

// A watch on a symbolic link sees changes to the file it points to, in
// another directory (the link's own directory sees nothing of them), and
// follows the link when it is pointed at another file.
func TestWatchFollowsSymlink(t *testing.T) {
	defer goleak.VerifyNone(t)
	dirs := mkdirs(t, "conf", "node", "conf2")
	ids := newIDs(t, 3)
	target := filepath.Join(dirs[0], "peers.yaml")
	writeFile(t, target, peersDoc(ids[0].String()))
	link := filepath.Join(dirs[1], "peers.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	l, err := Load(link)
	if err != nil {
		t.Fatal(err)
	}
	reloads, errs := make(chan Change, 16), make(chan error, 16)
	w, err := l.Watch(link, WatchOptions{
		OnReload: func(c Change) { reloads <- c },
		OnError:  func(err error) { errs <- err },
		Debounce: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	next := func() Change {
		t.Helper()
		select {
		case c := <-reloads:
			return c
		case err := <-errs:
			t.Fatalf("reload error: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("timed out waiting for a reload")
		}
		return Change{}
	}

	// As "p2pnode allowlist add" on the link does.
	if err := mustNew(t, Entry{ID: ids[1]}).Save(link); err != nil {
		t.Fatal(err)
	}
	if c := next(); !slices.Equal(entryIDs(c.Added), ids[1:2]) {
		t.Fatalf("change = %+v", c)
	}

	// The link pointed at a file in a third directory: taken at once,
	// and that file followed from then on.
	target2 := filepath.Join(dirs[2], "peers.yaml")
	writeFile(t, target2, peersDoc(ids[1].String()))
	tmp := filepath.Join(dirs[1], ".link.tmp")
	if err := os.Symlink(target2, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	if c := next(); !c.IsEmpty() {
		t.Fatalf("change after re-pointing = %+v, want empty", c)
	}
	replaceFile(t, target2, peersDoc(ids[2].String()))
	if c := next(); !slices.Equal(entryIDs(c.Added), ids[2:3]) {
		t.Fatalf("change in the new target = %+v", c)
	}
}
