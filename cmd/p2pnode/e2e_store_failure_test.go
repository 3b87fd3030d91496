package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// smallDisk mounts a tmpfs of size (mount's -o size=) at a new directory
// in dir, unmounted at cleanup. It needs root; like the network
// laboratory, it fails the test in CI (env CI set) and skips it elsewhere
// when it cannot mount.
func smallDisk(t *testing.T, dir, size string) string {
	t.Helper()
	mnt := filepath.Join(dir, "small-disk")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot mount a small tmpfs (needs root): %v: %s", err, strings.TrimSpace(string(out)))
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; CI must run it")
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// A store that fails for good (its disk full under a write to its log)
// stops the node: an error event, one line on stderr, exit status 1, for
// its supervisor to restart it. It kept running, refusing every send and
// answering every peer busy, with /readyz saying ok. The restart, once
// there is room, opens the store again.
func TestStoreFailureStopsNode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mnt := smallDisk(t, dir, "8m")
	keyA, _ := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idB)
	data := filepath.Join(mnt, "a")
	down := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", tu.LoopbackPort(t), idB)
	a, _ := startNode(t, "a", dir, keyA, list, "--data-dir", data)
	payload := strings.Repeat("x", 200<<10)
	// Requests to a peer that is down stay in the outbox: 8 MiB holds
	// fewer than 40 of them. The node may stop while they are written.
	for i := 1; i <= 80; i++ {
		line := fmt.Sprintf(`{"cmd":"request","addr":%q,"data":%q,"id":%d}`+"\n", down, payload, i)
		if _, err := a.stdin.Write([]byte(line)); err != nil {
			break
		}
	}
	code, rest := a.wait()
	if code != 1 {
		t.Fatalf("exit status %d, want 1; stderr:\n%s", code, a.errOutput())
	}
	if n := strings.Count(strings.TrimSpace(a.errOutput()), "\n"); !strings.Contains(a.errOutput(), "store: failed") {
		t.Fatalf("stderr (%d lines) does not say the store failed:\n%s", n+1, a.errOutput())
	}
	said := false
	for _, l := range rest {
		said = said || strings.Contains(l, `"event":"error"`) && strings.Contains(l, "a restart opens it again")
	}
	if !said {
		t.Errorf("no error event saying why the node stopped in:\n%s", strings.Join(rest, "\n"))
	}
	if out, err := exec.Command("mount", "-o", "remount,size=64m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	a2, _ := startNode(t, "a2", dir, keyA, list, "--data-dir", data)
	stopAll(t, a2)
}
