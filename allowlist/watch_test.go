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

// watchFixture watches a list file and exposes the callbacks as channels.
type watchFixture struct {
	path    string
	list    *List
	w       *Watcher
	reloads chan Change
	errs    chan error
}

func newWatchFixture(t *testing.T, initial string, debounce time.Duration) *watchFixture {
	t.Helper()
	f := &watchFixture{
		path:    filepath.Join(t.TempDir(), "peers.yaml"),
		reloads: make(chan Change, 16),
		errs:    make(chan error, 16),
	}
	writeFile(t, f.path, initial)
	closing := make(chan struct{})
	var err error
	if f.list, err = Load(f.path); err != nil {
		t.Fatal(err)
	}
	f.w, err = f.list.Watch(f.path, WatchOptions{
		// Never block the watcher on a test that stopped listening, or
		// Close would wait for it forever.
		OnReload: func(c Change) {
			select {
			case f.reloads <- c:
			case <-closing:
			}
		},
		OnError: func(err error) {
			select {
			case f.errs <- err:
			case <-closing:
			}
		},
		Debounce: debounce,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(closing)
		if err := f.w.Close(); err != nil {
			t.Error(err)
		}
		goleak.VerifyNone(t)
	})
	return f
}

// reload waits for the next reload, failing on a reload error.
func (f *watchFixture) reload(t *testing.T) Change {
	t.Helper()
	select {
	case c := <-f.reloads:
		return c
	case err := <-f.errs:
		t.Fatalf("unexpected reload error: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a reload")
	}
	return Change{}
}

// reloadPast is reload, passing over reload errors that match skip.
func (f *watchFixture) reloadPast(t *testing.T, skip error) Change {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case c := <-f.reloads:
			return c
		case err := <-f.errs:
			if !errors.Is(err, skip) {
				t.Fatalf("unexpected reload error: %v", err)
			}
		case <-deadline:
			t.Fatal("timed out waiting for a reload")
		}
	}
}

// writeFile rewrites path in place, as "cat > file" does: the file is
// briefly empty, which only the debounce hides from the watcher.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile replaces path by renaming a new file over it, so the watcher
// can never see a partial file and tests that check exact changes cannot
// flake on a slow machine.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	if err := writeFileAtomic(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func peersDoc(entries ...string) string {
	var b strings.Builder
	b.WriteString("peers:\n")
	for _, e := range entries {
		b.WriteString("  - id: " + e + "\n")
	}
	return b.String()
}

func TestWatchRewrite(t *testing.T) {
	ids := newIDs(t, 3)
	// In-place writes rely on the debounce, so use the default one.
	f := newWatchFixture(t, peersDoc(ids[0].String(), ids[1].String()), 0)

	writeFile(t, f.path, peersDoc(ids[1].String()+"\n    name: renamed", ids[2].String()))
	// Should the watcher read the file between the write's truncation and
	// its data (the writer held up past the debounce, on a loaded
	// machine), it refuses the empty list and keeps the old one; the
	// data's own event brings the new list.
	c := f.reloadPast(t, ErrEmptyReload)
	if !slices.Equal(entryIDs(c.Added), ids[2:3]) ||
		!slices.Equal(entryIDs(c.Removed), ids[0:1]) ||
		!slices.Equal(entryIDs(c.Updated), ids[1:2]) || c.Updated[0].Name != "renamed" {
		t.Errorf("change = %+v", c)
	}
	if l := f.list; l.Contains(ids[0]) || !l.Contains(ids[2]) {
		t.Error("list not reloaded")
	}
}

func TestWatchRenameReplace(t *testing.T) {
	ids := newIDs(t, 2)
	f := newWatchFixture(t, peersDoc(ids[0].String()), 20*time.Millisecond)
	// The way editors and config tools replace a file: write a new one
	// beside it and rename it over the old one.
	tmp := filepath.Join(filepath.Dir(f.path), ".peers.yaml.swp")
	writeFile(t, tmp, peersDoc(ids[1].String()))
	if err := os.Rename(tmp, f.path); err != nil {
		t.Fatal(err)
	}
	c := f.reload(t)
	if !slices.Equal(entryIDs(c.Added), ids[1:]) || !slices.Equal(entryIDs(c.Removed), ids[:1]) {
		t.Errorf("change = %+v", c)
	}

	// And again: a watch on the replaced file itself would have ended.
	if err := mustNew(t, Entry{ID: ids[0]}, Entry{ID: ids[1]}).Save(f.path); err != nil {
		t.Fatal(err)
	}
	c = f.reload(t)
	if !slices.Equal(entryIDs(c.Added), ids[:1]) || len(c.Removed) != 0 {
		t.Errorf("second change = %+v", c)
	}
}

func TestWatchBrokenFileKeepsList(t *testing.T) {
	ids := newIDs(t, 2)
	f := newWatchFixture(t, peersDoc(ids[0].String()), 20*time.Millisecond)

	replaceFile(t, f.path, peersDoc(ids[1].String())+"    addrs: [10.0.0.0/40]\n")
	err := recv(t, f.errs, "OnError")
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Path != f.path || pe.Line != 3 {
		t.Errorf("error = %v; want a ParseError for %s line 3", err, f.path)
	}
	if !strings.Contains(err.Error(), f.path+": line 3:") {
		t.Errorf("error %q does not name file and line", err)
	}
	if !slices.Equal(entryIDs(f.list.Entries()), ids[:1]) {
		t.Error("broken file changed the list")
	}

	// Fixing the file recovers.
	replaceFile(t, f.path, peersDoc(ids[1].String()))
	if c := f.reload(t); !slices.Equal(entryIDs(c.Added), ids[1:]) {
		t.Errorf("change after fix = %+v", c)
	}
}

func TestWatchRemovedFileKeepsList(t *testing.T) {
	id := newID(t)
	f := newWatchFixture(t, peersDoc(id.String()), 20*time.Millisecond)
	if err := os.Remove(f.path); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, f.errs, "OnError"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error = %v; want fs.ErrNotExist", err)
	}
	if !f.list.Contains(id) {
		t.Error("deleting the file emptied the list")
	}
	// An unchanged file reappearing is a successful, empty reload.
	replaceFile(t, f.path, peersDoc(id.String()))
	if c := f.reload(t); !c.IsEmpty() {
		t.Errorf("change = %+v, want empty", c)
	}
}

func TestWatchIgnoresOtherFiles(t *testing.T) {
	ids := newIDs(t, 2)
	f := newWatchFixture(t, peersDoc(ids[0].String()), 20*time.Millisecond)
	// A broken neighbour must not be reloaded; the next reload must be the
	// one for our own file.
	writeFile(t, filepath.Join(filepath.Dir(f.path), "other.yaml"), "not: [valid")
	replaceFile(t, f.path, peersDoc(ids[1].String()))
	if c := f.reload(t); !slices.Equal(entryIDs(c.Added), ids[1:]) {
		t.Errorf("change = %+v", c)
	}
}

func TestWatchDirectoryRemoved(t *testing.T) {
	f := newWatchFixture(t, peersDoc(newID(t).String()), 20*time.Millisecond)
	dir := filepath.Dir(f.path)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	// Removing the file comes first and fails the reload; then the
	// directory itself goes.
	for {
		err := recv(t, f.errs, "OnError")
		if strings.Contains(err.Error(), "directory "+dir+" was removed") {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("unexpected error %v", err)
		}
	}
	if f.list.Len() != 1 {
		t.Error("list changed")
	}
}

func TestWatchClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	path := filepath.Join(t.TempDir(), "peers.yaml")
	l := mustNew(t)
	w, err := l.Watch(path, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestWatchErrors(t *testing.T) {
	l := mustNew(t)
	if _, err := l.Watch(filepath.Join(t.TempDir(), "missing", "peers.yaml"), WatchOptions{}); err == nil {
		t.Error("Watch in a missing directory succeeded")
	}
	if _, err := l.Watch("", WatchOptions{}); err == nil {
		t.Error("Watch with an empty path succeeded")
	}
	if _, err := l.Watch(filepath.Join(t.TempDir(), "p.yaml"), WatchOptions{Debounce: -1}); err == nil {
		t.Error("Watch with a negative debounce succeeded")
	}
}

func TestWatchRoutes(t *testing.T) {
	defer goleak.VerifyNone(t)
	id := newID(t)
	path := filepath.Join(t.TempDir(), "routes.yaml")
	writeFile(t, path, "routes:\n  - from: "+id.String()+"\n    to_channel: 1\n")
	r, err := LoadRoutes(path)
	if err != nil {
		t.Fatal(err)
	}
	reloads, errs := make(chan Change, 4), make(chan error, 4)
	w, err := r.Watch(path, WatchOptions{
		OnReload: func(c Change) { reloads <- c },
		OnError:  func(err error) { errs <- err },
		Debounce: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	replaceFile(t, path, "routes:\n  - from: '*'\n    to_channel: 2\n")
	recv(t, reloads, "OnReload")
	if r.Permits(id, 0, 1) || !r.Permits(id, 0, 2) {
		t.Errorf("routes not reloaded: %v", r.Rules())
	}

	replaceFile(t, path, "routes:\n  - from: nobody\n")
	if err := recv(t, errs, "OnError"); !strings.Contains(err.Error(), path+": line 2:") {
		t.Errorf("error = %v", err)
	}
	if !r.Permits(id, 0, 2) {
		t.Error("broken routes file changed the table")
	}
}
