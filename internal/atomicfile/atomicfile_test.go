package atomicfile_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/internal/atomicfile"
)

// Write replaces the contents and the mode, and leaves no temporary file;
// a failed write leaves the old file as it was.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two, longer"} {
		if err := atomicfile.Write(path, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	// A directory where the file should be: the rename fails.
	sub := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(sub, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "x", "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(filepath.Join(sub, "x"), []byte("y"), 0o644); err == nil {
		t.Fatal("writing over a non-empty directory succeeded")
	}
	for _, d := range []string{dir, sub} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.Name() != "f" && e.Name() != "sub" && e.Name() != "x" {
				t.Fatalf("left behind in %s: %s", d, e.Name())
			}
		}
	}
}
