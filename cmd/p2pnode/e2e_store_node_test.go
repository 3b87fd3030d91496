package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// deadletters retry and drop and outbox drop change a running node's
// store through its control socket: a retried dead letter runs at once
// with its ID and stdin id, a dropped one is gone, an exchange dropped
// from the outbox ends "cancelled" without being dead-lettered; an
// unknown ID changes nothing.
func TestStoreChangesThroughNode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	keyC, idC := newKey(t, dir, "c.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB, idC)
	data := filepath.Join(dir, "data")
	at := []string{"--data-dir", data}
	portB := tu.LoopbackPort(t)
	downB := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", portB, idB)

	a, _ := startNode(t, "a", dir, keyA, list, "--data-dir", data, "--max-attempts", "1")
	a.send(map[string]any{"cmd": "request", "addr": downB, "data": "lost?", "id": 9})
	ex := a.expect("the failed exchange", match("exchange", "peer", idB, "id", 9, "dead_lettered", true))[0].Str("exchange")

	r := runCLI(t, dir, append([]string{"deadletters", "retry", ex, "00000000000000ab"}, at...)...)
	oneErrorLine(t, r, "00000000000000ab not in the dead letters: nothing changed")
	if r.code != exitError || len(storeList(t, dir, "deadletters", at...)) != 1 {
		t.Fatalf("retry with an unknown ID: %+v", r)
	}

	b, _ := startNodeOn(t, "b", dir, keyB, list, portB, "--auto-reply", "echo")
	out := mustRun(t, dir, append([]string{"deadletters", "retry", ex}, at...)...)
	if !strings.Contains(out, ex) || !strings.Contains(out, "the node runs them now") {
		t.Fatalf("retry: %q", out)
	}
	a.expect("the retried exchange", match("exchange", "exchange", ex, "id", 9, "ok", true, "attempts", 1))
	if n := len(storeList(t, dir, "deadletters", at...)); n != 0 {
		t.Fatalf("%d dead letters after retry", n)
	}

	// C is down: a dead letter to drop.
	a.send(map[string]any{"cmd": "send", "peer": idC, "addr": fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", tu.LoopbackPort(t), idC),
		"data": "x", "id": 10})
	a.expect("the failed message", match("exchange", "id", 10, "dead_lettered", true))
	mustRun(t, dir, append([]string{"deadletters", "drop", "--all"}, at...)...)
	if n := len(storeList(t, dir, "deadletters", at...)); n != 0 {
		t.Fatalf("%d dead letters after drop", n)
	}

	// C up and never answering: a request awaiting its reply, dropped.
	c, lc := startNode(t, "c", dir, keyC, list)
	a.send(map[string]any{"cmd": "request", "addr": firstAddr(t, lc), "data": "answer?", "id": 11})
	c.expect("the request", match("request", "from", idA))
	ob := storeList(t, dir, "outbox", at...)
	if len(ob) != 1 || ob[0]["tag"] != "11" {
		t.Fatalf("outbox: %v", ob)
	}
	ex3 := ob[0]["exchange"].(string)
	r = runCLI(t, dir, append([]string{"outbox", "drop", ex3, ex}, at...)...)
	oneErrorLine(t, r, "no outgoing exchange "+ex+" in progress: nothing changed")
	if r.code != exitError {
		t.Fatalf("outbox drop with an ended exchange: %+v", r)
	}
	mustRun(t, dir, append([]string{"outbox", "drop", ex3}, at...)...)
	cancelled := a.expect("the cancelled exchange", match("exchange", "exchange", ex3, "id", 11, "ok", false, "reason", "cancelled"))[0]
	if dl, _ := cancelled["dead_lettered"].(bool); dl {
		t.Fatalf("cancelled and dead-lettered: %v", cancelled)
	}
	if n := len(storeList(t, dir, "outbox", at...)); n != 0 {
		t.Fatalf("%d in the outbox after drop", n)
	}
	if n := len(storeList(t, dir, "deadletters", at...)); n != 0 {
		t.Fatalf("%d dead letters after an outbox drop", n)
	}
	stopAll(t, a, b, c)
}
