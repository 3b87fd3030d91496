package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// 1000 requests between two run nodes, --json: every reply carries the
// stdin id of its request and comes before its exchange event, and both
// carry the allowlist's name of the peer beside its ID.
func TestReplyBeforeExchangeOver1000(t *testing.T) {
	t.Parallel()
	const n = 1000
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	doc := "peers:\n  - id: " + idA + "\n    name: alice\n  - id: " + idB + "\n    name: bob\n"
	if err := os.WriteFile(list, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	b, lb := startNode(t, "b", dir, keyB, list, "--ephemeral", "--auto-reply", "echo", "--keep-connection")
	a, _ := startNode(t, "a", dir, keyA, list, "--ephemeral", "--keep-connection")
	addrB := firstAddr(t, lb)
	// b prints a request and an exchange event per exchange: unread, its
	// output would fill the pipe and stop it.
	go func() {
		for range b.lines {
		}
	}()

	// Written from another goroutine: a's output must be read meanwhile, or
	// it would stop reading its stdin.
	written := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			line := fmt.Sprintf(`{"cmd":"request","peer":%q,"addr":%q,"data":"q%d","id":%d}`+"\n", idB, addrB, i, i)
			if _, err := a.stdin.Write([]byte(line)); err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()

	replied := make(map[int]bool, n)
	ended := 0
	deadline := time.After(3 * time.Minute)
	for ended < n {
		line := a.nextLine(deadline, fmt.Sprintf("the end of %d exchanges (%d so far)", n, ended))
		var e event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		id, _ := strconv.Atoi(e.Str("id"))
		switch e.Str("event") {
		case "reply":
			if id < 1 || id > n || replied[id] || e.Str("from") != idB || e.Str("from_name") != "bob" || e.Str("data") != "q"+e.Str("id") {
				t.Fatalf("reply %v", e)
			}
			replied[id] = true
		case "exchange":
			if !replied[id] || e.Str("ok") != "true" || e.Str("peer_name") != "bob" {
				t.Fatalf("exchange event before its reply, or failed: %v", e)
			}
			ended++
		case "connected", "disconnected":
		default:
			t.Fatalf("unexpected event %v", e)
		}
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	stopAll(t, a)
	b.stdin.Close()
	select {
	case <-b.exited:
		if b.err != nil {
			t.Fatalf("b: %v; stderr:\n%s", b.err, b.errOutput())
		}
	case <-time.After(waitTimeout):
		t.Fatal("b did not exit")
	}
}
