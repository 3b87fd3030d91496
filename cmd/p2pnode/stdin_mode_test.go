package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Each kind of stdin a node can be given, and what run makes of it.
func TestDetectStdinMode(t *testing.T) {
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	file := filepath.Join(t.TempDir(), "commands.jsonl")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	regular, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()
	closed, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sock, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()

	for _, tc := range []struct {
		name string
		in   io.Reader
		want stdinMode
	}{
		{"/dev/null", devNull, stdinNoCommands},
		{"pipe", r, stdinReadCommands},
		{"regular file", regular, stdinReadCommands},
		{"socket", sock, stdinReadCommands},
		{"closed descriptor", closed, stdinNoCommands},
		{"not a file", strings.NewReader(""), stdinReadCommands},
	} {
		if got := detectStdinMode(tc.in); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
