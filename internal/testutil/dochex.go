package testutil

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ProtocolDoc is docs/PROTOCOL.md from a package directory of the module.
const ProtocolDoc = "../docs/PROTOCOL.md"

// DocHex reads the byte-exact examples of a markdown page: every fenced
// block opened by "```hex NAME", whose lines hold hex bytes separated by
// spaces, each line optionally ending in a "#" comment. It returns the
// bytes of each block by name, so that a test can hold the page to what
// the code writes.
func DocHex(t testing.TB, path string) map[string][]byte {
	t.Helper()
	text, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte)
	var (
		name string
		in   bool
	)
	for i, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case !in && strings.HasPrefix(line, "```hex "):
			name, in = strings.TrimSpace(strings.TrimPrefix(line, "```hex ")), true
			if _, dup := out[name]; dup || name == "" {
				t.Fatalf("%s:%d: hex block %q named twice or unnamed", path, i+1, name)
			}
			out[name] = []byte{}
		case in && line == "```":
			in = false
		case in:
			if c := strings.IndexByte(line, '#'); c >= 0 {
				line = line[:c]
			}
			for _, tok := range strings.Fields(line) {
				b, err := hex.DecodeString(tok)
				if err != nil || len(b) != 1 {
					t.Fatalf("%s:%d: %q in hex block %q is not one hex byte", path, i+1, tok, name)
				}
				out[name] = append(out[name], b[0])
			}
		}
	}
	if in {
		t.Fatalf("%s: hex block %q is not closed", path, name)
	}
	return out
}
