package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A node whose stdout reader goes away (a pipe's reader exits, the
// journal's stream breaks) keeps running, as the printer's contract says:
// a write fails and is reported, it does not kill the node with SIGPIPE
// (Go's default for a broken pipe on stdout, even when the parent ignores
// SIGPIPE as systemd does), which would skip the orderly shutdown, leave
// the control socket behind, and which systemd counts as a clean exit,
// not restarted by Restart=on-failure.
func TestRunSurvivesStdoutReaderGone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "a.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id)
	data := filepath.Join(dir, "data")

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(binPath, "run", "--json", "--key", key, "--allowlist", list,
		"--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir", data, "--no-stdin")
	cmd.Dir, cmd.Env, cmd.Stdout = dir, childEnv(), w
	var (
		mu     sync.Mutex
		stderr bytes.Buffer
	)
	cmd.Stderr = lockedWriter{&mu, &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	if err := r.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || !strings.Contains(line, `"listening"`) {
		t.Fatalf("first line %q, %v", line, err)
	}
	r.Close() // the reader goes away

	// The reload prints a reloaded event, into the broken pipe, before it
	// answers.
	if res := runCLI(t, dir, "allowlist", "reload", "--data-dir", data); res.code != 0 {
		t.Fatalf("allowlist reload after stdout's reader went away: exit %d: %s", res.code, res.stderr)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case err := <-exited:
		exited <- err // for Cleanup
		if err != nil {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("node ended with %v, want exit 0; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(waitTimeout):
		t.Fatalf("node did not stop within %s of SIGTERM", waitTimeout)
	}
	if _, err := os.Lstat(filepath.Join(data, "control.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control socket left behind: %v", err)
	}
}
